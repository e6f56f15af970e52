"""Fine-tuning datasets from a company's own repositories, behind quality gates (SPEC section 3).

``pipeline.DatasetBuilder`` runs the stages; ``builders``, ``pairs`` and ``history`` cut instances; ``source``
holds one file with its metrics; ``secrets``, ``dedup``, ``decontam``, ``licences`` and ``splits`` are the
hygiene; ``formats`` and ``card`` write the result; ``distill`` makes teacher-written instances checked in the
sandbox.
"""

from forgepilot.datagen.types import KINDS, SCHEMA_VERSION, Instance, Rejections

__all__ = ["KINDS", "SCHEMA_VERSION", "Instance", "Rejections"]
