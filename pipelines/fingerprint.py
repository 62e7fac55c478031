"""A stage's fingerprint and what it is made of (its "basis"): the stage's config section, the
settings every stage shares, the code it runs, and its inputs' content: an earlier stage's
output by that stage's output id (a new one each time it runs), anything outside the run
directory by the names, sizes and contents of its files (not their modification times).

The basis is kept in the manifest, so a stale stage can say which key, file or input changed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from pipelines.code_version import code_hashes
from pipelines.config import PipelineConfig
from pipelines.stages import MODULES
from pipelines.stages.spec import External, Output, StageSpec

SHARED_KEYS = {"model_settings", "data", "seed", "precision"}
PENDING = "(rerun in this run)"


def external_signature(location: str | Path) -> str:
    """Content signature of a local file or folder (relative names, sizes and a hash of each
    file's bytes), or the name itself for a model named by hub id. Not modification times: a
    copy of the same data (a volume provisioned again, `rsync` without `-t`, a container
    image rebuilt) must not make a finished run's every stage stale."""
    path = Path(location)
    if not path.exists():
        return f"id:{location}"
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        name = file.name if file == path else str(file.relative_to(path))
        content = file_digest(str(file.resolve()), stat.st_size, stat.st_ctime_ns, stat.st_ino)
        digest.update(f"{name}\0{stat.st_size}\0{content}\n".encode())
    return f"{path.resolve()}:{digest.hexdigest()[:16]}"


@functools.lru_cache(maxsize=4096)
def file_digest(path: str, size: int, ctime_ns: int, inode: int) -> str:
    """BLAKE2b of a file's bytes, read once per process for as long as its size, inode and
    status-change time stay the same (any write or `touch` moves the last, and no one can set
    it back); the runner plans every stage, each reading the same data. 1.6 s per GB here."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "blake2b").hexdigest()[:32]


def output_id(manifest: dict | None) -> str | None:
    """What downstream stages chain on: changes whenever the stage runs again."""
    if manifest is None:
        return None
    return f"{manifest['fingerprint']}:{manifest.get('run_id', '')}"


def basis(config: PipelineConfig, stage: str, spec: StageSpec, upstream: dict) -> dict:
    """What determines ``stage``'s output; ``upstream`` maps stage -> its manifest (or None,
    or PENDING when it is about to run)."""
    inputs = {}
    for name, ref in spec.reads.items():
        if isinstance(ref, External):
            inputs[name] = external_signature(ref.location)
        else:
            found = upstream.get(ref.stage)
            inputs[name] = found if found in (None, PENDING) else output_id(found)
    return {
        "stage": stage,
        "section": getattr(config.stages, stage).model_dump(mode="json", exclude={"enabled"}),
        "shared": config.model_dump(mode="json", include=SHARED_KEYS),
        "code": code_hashes(MODULES[stage]),
        "inputs": inputs,
    }


def fingerprint(stage_basis: dict) -> str:
    return hashlib.sha256(json.dumps(stage_basis, sort_keys=True).encode()).hexdigest()[:16]


def why_stale(old: dict | None, new: dict, spec: StageSpec) -> list[str]:
    """Human-readable differences between the basis a stage ran with and the current one."""
    if old is None:
        return ["made by an older RQA that kept no fingerprint basis"]
    reasons = []
    for part in ("section", "shared"):
        prefix = f"stages.{new['stage']}." if part == "section" else ""
        for key in changed_keys(old.get(part, {}), new[part]):
            reasons.append(f"config {prefix}{key} changed")
    changed = sorted(
        f for f in set(old.get("code", {})) | set(new["code"])
        if old.get("code", {}).get(f) != new["code"].get(f)
    )  # fmt: skip
    if changed:
        more = f" (+{len(changed) - 3} more)" if len(changed) > 3 else ""
        reasons.append(f"code changed: {', '.join(changed[:3])}{more}")
    for name, value in new["inputs"].items():
        if old.get("inputs", {}).get(name) != value:
            reasons.append(f"input {name} ({describe(spec.reads[name])}) {input_change(value)}")
    return reasons or ["fingerprint differs"]


def input_change(value: str | None) -> str:
    if value == PENDING:
        return "is rerun first"
    return "has not run" if value is None else "changed"


def describe(ref: Output | External) -> str:
    if isinstance(ref, External):
        return os.fspath(ref.location)
    return f"{ref.stage}/{ref.name}" if ref.name else ref.stage


def changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys
