"""Fine-tuning datasets from a company's own repositories, behind quality gates (SPEC section 3).

``pipeline.DatasetBuilder`` runs the stages; ``builders``, ``pairs`` and ``history`` cut instances; ``source``
holds one file with its metrics; ``secrets``, ``dedup``, ``decontam``, ``licences`` and ``splits`` are the
hygiene; ``formats`` and ``card`` write the result and ``dataset.Dataset`` reads it back (for training, evaluation
and the gates); ``distill`` makes teacher-written instances checked in the
sandbox.
"""

from forgepilot.datagen.dataset import Dataset, DatasetCard, DatasetError
from forgepilot.datagen.types import KINDS, SCHEMA_VERSION, Instance, Rejections

__all__ = ["KINDS", "SCHEMA_VERSION", "Dataset", "DatasetCard", "DatasetError", "Instance", "Rejections"]
