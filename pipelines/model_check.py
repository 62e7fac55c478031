"""Before a run starts: every model a stage will load is a local folder, a hub id already in
the local Hugging Face cache, or a hub id the hub can serve now. Otherwise one line that says
what to pass, instead of a traceback from inside a Ray worker after the first stages ran."""

from __future__ import annotations

from pathlib import Path

from retrieval.errors import MissingInputError


def check_model_available(name: str, key: str) -> None:
    """Raise MissingInputError unless model ``name`` (named by config ``key``) can be loaded."""
    if Path(name).exists():
        return
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        huggingface_hub.snapshot_download(name, local_files_only=True)
        return
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError, OSError):
        pass
    where = f"{key} '{name}': not a local folder nor in the Hugging Face cache"
    hint = "pass --model PATH (a local copy of the model) or set the key to a folder"
    if huggingface_hub.is_offline_mode():
        raise MissingInputError(f"{where}, and the hub is offline (HF_HUB_OFFLINE); {hint}")
    try:
        huggingface_hub.model_info(name, timeout=10)
    except huggingface_hub.errors.RepositoryNotFoundError:
        raise MissingInputError(f"{where}, and the hub has no such model; {hint}") from None
    except Exception as err:  # noqa: BLE001 - any failure to reach the hub (httpx, DNS, HTTP)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MissingInputError(f"{where}, and the hub is unreachable ({reason}); {hint}") from None
