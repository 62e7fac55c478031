"""``model_settings`` as a typed config block: every field of DualEncoderSettings, optional, so a
config overrides some and a typo (``poolling``) or a bad value fails when the config is read.

Derived from the dataclass, so a new setting needs no second declaration here.
"""

from __future__ import annotations

import dataclasses
import typing

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from retrieval.models.dual_encoder import DualEncoderSettings


class _SettingsBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def overrides(self) -> dict:
        """The settings this config sets (the rest come from the model folder or defaults)."""
        return self.model_dump(exclude_none=True)

    @model_validator(mode="after")
    def _values_are_valid(self):
        defaults = dataclasses.asdict(DualEncoderSettings())
        DualEncoderSettings(**{**defaults, **self.overrides()})  # its own checks, one line each
        return self


def _fields() -> dict:
    hints = typing.get_type_hints(DualEncoderSettings)
    return {
        f.name: (hints[f.name] | None, Field(default=None))
        for f in dataclasses.fields(DualEncoderSettings)
    }


ModelSettings = create_model("ModelSettings", __base__=_SettingsBase, **_fields())
