"""Before any stage runs: the GPUs and CPUs that the stages about to run ask their Ray actors
for must exist in the Ray cluster, or Ray would wait for them forever without a word."""

from __future__ import annotations

from retrieval.errors import ConfigError


def demands(section) -> tuple[float, float]:
    """(CPUs, GPUs) one actor or Ray Train worker of a stage section asks for; (0, 0) for
    work in the driver process (``actors: 0``, ``launcher: local``)."""
    train = getattr(section, "train", None)
    if train is not None:
        if train.launcher != "ray":
            return 0.0, 0.0
        return 1.0, 1.0 if train.use_gpu else 0.0
    if not getattr(section, "actors", 0):
        return 0.0, 0.0
    return section.cpus_per_actor, section.gpus_per_actor


def check_cluster(config, stages: list[str], available: dict[str, float]) -> None:
    """One line naming the first of ``stages`` whose actors cannot be placed on a node of a
    cluster with ``available`` resources (``ray.cluster_resources()``)."""
    for stage in stages:
        cpus, gpus = demands(getattr(config.stages, stage))
        for name, wanted in (("GPU", gpus), ("CPU", cpus)):
            have = available.get(name, 0.0)
            if wanted > have:
                raise ConfigError(
                    f"stages.{stage}: each of its Ray actors or workers asks for {wanted:g} "
                    f"{name}s but the Ray cluster has {have:g} (gpus_per_actor / cpus_per_actor"
                    f", or train.use_gpu); lower it, or run in the driver (actors: 0)"
                )
