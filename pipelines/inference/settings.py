"""How a stage runs its model inference: the keys every inference stage's section takes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class InferenceSettings(BaseModel):
    """``actors: 0`` runs the workers in the driver process (tests, one small machine);
    ``actors: N`` runs N Ray Data actors, each with ``cpus_per_actor`` CPUs and
    ``gpus_per_actor`` GPUs (> 0: the model on CUDA, bf16 where the config's precision allows).
    ``batch_size`` is the model batch inside a worker."""

    model_config = ConfigDict(extra="forbid")

    actors: int = Field(default=0, ge=0, description="0: in the driver; N: N Ray Data actors")
    cpus_per_actor: float = Field(default=1.0, gt=0, description="CPUs each actor reserves")
    gpus_per_actor: float = Field(default=0.0, ge=0, description="GPUs each actor reserves")
    batch_size: int = Field(default=32, ge=1, description="texts or pairs per model call")

    def inference(self) -> InferenceSettings:
        """These settings alone (a stage section subclasses this model)."""
        return InferenceSettings(**{k: getattr(self, k) for k in InferenceSettings.model_fields})
