"""RetroMAE pre-training (``kind: retromae``): a masked auto-encoder whose one-layer decoder must
rebuild a heavily masked passage from the encoder's sentence embedding alone (Xiao et al. 2022).

settings.py: the mask ratios; masking.py: the seeded masking collator; mlm_head.py: the
vocabulary head; decoder.py: the decoder; module.py: the two losses; build.py: the assembly
the training loop runs. Only the encoder is exported, as a plain dual-encoder folder.
"""
