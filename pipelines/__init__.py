"""RQA's orchestration: the `rqa` command line, one thin module per command, and (later) stages.

Holds no retrieval science: every command calls the `retrieval` library.
"""
