"""Adapt: fine-tune a base model on a dataset (LoRA or full SFT), export it for llama.cpp and register it."""

from forgepilot.train.base import BaseModel, BaseModelError, resolve_base
from forgepilot.train.check import ConversionCheck
from forgepilot.train.examples import Encoded, Encoder, Example
from forgepilot.train.gguf_io import ExportError, quantize, write_lora_adapter, write_model
from forgepilot.train.loop import TrainingInterrupted, TrainOutcome
from forgepilot.train.plan import Hyperparameters, MethodChoice, Mix, choose_method
from forgepilot.train.run import TrainReport, TrainRequest, run_training

__all__ = [
    "BaseModel",
    "BaseModelError",
    "ConversionCheck",
    "Encoded",
    "Encoder",
    "Example",
    "ExportError",
    "Hyperparameters",
    "MethodChoice",
    "Mix",
    "TrainOutcome",
    "TrainReport",
    "TrainRequest",
    "TrainingInterrupted",
    "choose_method",
    "quantize",
    "resolve_base",
    "run_training",
    "write_lora_adapter",
    "write_model",
]
