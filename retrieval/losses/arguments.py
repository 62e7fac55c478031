"""Typed arguments of each loss, derived from its constructor, so a config's ``loss_args`` is
checked against the loss it names (a typo such as ``temprature`` fails at load time).

Only parameters with a default are settable from a config; the others (a model dimension, say)
are supplied by the training loop.
"""

from __future__ import annotations

import functools
import inspect
import typing

from pydantic import BaseModel, ConfigDict, create_model


class LossArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


@functools.cache
def loss_arguments(name: str) -> type[LossArgs]:
    """The pydantic model of the settable arguments of the loss registered as ``name``."""
    from retrieval.losses import LOSSES

    cls = LOSSES[name]
    hints = typing.get_type_hints(cls.__init__)
    fields = {
        param.name: (hints.get(param.name, typing.Any), param.default)
        for param in list(inspect.signature(cls.__init__).parameters.values())[1:]
        if param.default is not inspect.Parameter.empty
    }
    return create_model(f"{cls.__name__}Args", __base__=LossArgs, **fields)


def settable(name: str) -> list[str]:
    """Names a config may set for the loss ``name``, for error messages."""
    return list(loss_arguments(name).model_fields)
