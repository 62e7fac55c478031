"""How a stage runs its model inference: the keys every inference stage's section takes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class InferenceSettings(BaseModel):
    """``actors: 0`` runs the workers in the driver process (tests, one small machine);
    ``actors: N`` runs N Ray Data actors, each with ``cpus_per_actor`` CPUs and
    ``gpus_per_actor`` GPUs (> 0: the model on CUDA, bf16 where the config's precision allows).
    ``batch_size`` is the model batch inside a worker. ``actors: auto``: as many actors as the
    Ray cluster can hold at once (its GPUs / ``gpus_per_actor``, else its CPUs /
    ``cpus_per_actor``), so one config fills 8 or 64 GPUs."""

    model_config = ConfigDict(extra="forbid")

    actors: int | Literal["auto"] = Field(
        default=0, description="0: in the driver; N: N Ray Data actors; auto: as many as fit"
    )
    cpus_per_actor: float = Field(default=1.0, gt=0, description="CPUs each actor reserves")
    gpus_per_actor: float = Field(default=0.0, ge=0, description="GPUs each actor reserves")
    batch_size: int = Field(default=32, ge=1, description="texts or pairs per model call")

    @field_validator("actors")
    @classmethod
    def _actors(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError("actors must be 0 or more, or auto")
        return value

    def count(self) -> int:
        """The number of actors: ``auto`` counted from the running Ray cluster's resources."""
        if self.actors != "auto":
            return self.actors
        import ray

        have = ray.cluster_resources()
        if self.gpus_per_actor > 0:
            return max(1, int(have.get("GPU", 0) // self.gpus_per_actor))
        return max(1, int(have.get("CPU", 1) // self.cpus_per_actor))

    def inference(self) -> InferenceSettings:
        """These settings alone (a stage section subclasses this model)."""
        return InferenceSettings(**{k: getattr(self, k) for k in InferenceSettings.model_fields})
