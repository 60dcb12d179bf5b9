"""The shared training engine: data on the device, mixed precision, DDP, checkpoints.

Imports torch; the CLI imports this package inside the commands that need it.
"""

from ekdcli.engine.bench import StepBench, StepTiming
from ekdcli.engine.loop import FitResult, fit
from ekdcli.engine.objective import CrossEntropyObjective, Objective, StepOutput
from ekdcli.engine.options import EngineOptions
from ekdcli.engine.pipeline import Batch, DeviceBatches, LoaderBatches, crop_flip, make_batches
from ekdcli.engine.predict import evaluate_model, predict
from ekdcli.engine.recipe import RECIPES, Recipe, build_optimizer, build_scheduler, lr_factor
from ekdcli.engine.runtime import Runtime, seed_everything

__all__ = [
    "RECIPES",
    "Batch",
    "CrossEntropyObjective",
    "DeviceBatches",
    "EngineOptions",
    "FitResult",
    "LoaderBatches",
    "Objective",
    "Recipe",
    "Runtime",
    "StepBench",
    "StepOutput",
    "StepTiming",
    "build_optimizer",
    "build_scheduler",
    "crop_flip",
    "evaluate_model",
    "fit",
    "lr_factor",
    "make_batches",
    "predict",
    "seed_everything",
]
