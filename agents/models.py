"""The model table: which models exist, what they cost, and registering them with litellm."""

from __future__ import annotations

from dataclasses import dataclass

import litellm

__all__ = ["SIMULATOR_MODELS", "ModelInfo", "register_models"]


@dataclass(frozen=True)
class ModelInfo:
    """One model the router may choose: cost per token, a quality score in [0, 1], context window."""

    name: str
    input_cost_per_token: float
    output_cost_per_token: float
    quality: float
    context_window: int = 8192


# The offline simulator's models: cheap/fast, middle, and expensive/good, like a real provider's tiers.
SIMULATOR_MODELS: tuple[ModelInfo, ...] = (
    ModelInfo("simulator/fast-1", 1e-7, 4e-7, quality=0.55, context_window=16384),
    ModelInfo("simulator/balanced-1", 5e-7, 1.5e-6, quality=0.75, context_window=32768),
    ModelInfo("simulator/quality-1", 3e-6, 1.2e-5, quality=0.92, context_window=131072),
)


def register_models(models: tuple[ModelInfo, ...] = SIMULATOR_MODELS) -> None:
    """Teach litellm the prices of models it does not know, so `cost_per_token` covers them."""
    litellm.register_model(
        {
            m.name: {
                "input_cost_per_token": m.input_cost_per_token,
                "output_cost_per_token": m.output_cost_per_token,
                "litellm_provider": m.name.split("/", 1)[0],
                "mode": "chat",
                "max_tokens": m.context_window,
                "max_input_tokens": m.context_window,
                # Set explicitly so litellm has nothing to warn about for these models.
                "cache_creation_input_token_cost": 0.0,
                "cache_read_input_token_cost": 0.0,
            }
            for m in models
        }
    )
