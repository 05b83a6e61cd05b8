"""Dataset health: leaks across splits, label errors, outliers, poor or broken photos and duplicates, each kind
with the precision measured on the collection itself.

The audit works on a model's references (:class:`lookalike.references.core.References`):
the image-quality kinds read the facts stored at indexing time
(:mod:`.quality`), the neighbour kinds come from one blockwise k-NN pass
(:mod:`.neighbours`, :mod:`.labels`, :mod:`.outliers`, :mod:`.leaks`), copies from
the dedup tiers (:mod:`.copies`); each kind is calibrated on problems planted
in copies of a sample of the collection (:mod:`.planted`, :mod:`.confidence`).
"""

from lookalike.audit.report import KINDS, AuditReport
from lookalike.audit.run import audit

__all__ = ["KINDS", "AuditReport", "audit"]
