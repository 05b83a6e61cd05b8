"""The JSON shapes of the REST API (they also make its OpenAPI spec)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    references: int


class Summary(BaseModel):
    """The model's own summary (``model.summary(output="dict")``) plus what the server offers."""

    model_config = ConfigDict(extra="allow")

    num_references: int
    has_images: bool = Field(description="whether the references are image files the server can show")
    can_query_images: bool = Field(description="whether uploads can be embedded (False for precomputed embeddings)")
    has_match: bool = Field(default=False, description="whether a second set is matched (the Match view)")
    thumbnail_size: int
    max_upload_bytes: int
    max_upload_pixels: int


class Reference(BaseModel):
    index: int = Field(description="position in the model: the address of the reference in this API")
    label: int | str
    path: str | None = None
    version: str | None = Field(
        default=None,
        description="a key of the file as it is now: its thumbnail's address takes it as v= (null: no file)",
    )
    width: int | None = None
    height: int | None = None


class ReferencePage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[Reference]


class Neighbour(Reference):
    distance: float
    rank: int


class Neighbours(BaseModel):
    query: Reference | None = Field(description="the reference whose neighbours these are (None for an upload)")
    k: int
    radius: float | None
    neighbours: list[Neighbour]


class UploadInfo(BaseModel):
    width: int
    height: int
    format: str


class UploadNeighbours(Neighbours):
    upload: UploadInfo


class Member(Reference):
    keeper: bool = Field(description="the image of the group a dedup would keep (the first member)")
    distance: float = Field(description="distance to the group's keeper")
    tier: str = Field(
        description="its strongest link in the group: exact, same-pixels, resized, edited (copies) or similar "
        "(a look-alike); a keeper: its group's strongest"
    )
    action: Literal["keep", "discard", "none"] = Field(
        description="what a dedup does with it: keep (the keeper), discard (a copy of the keeper), none (a "
        "look-alike, a copy of another member, or kept by a person)"
    )
    matched: int | None = Field(default=None, description="position of the member its tier links it to")
    similar_to_group: int | None = Field(default=None, description="a look-alike: the group (number) it resembles")
    reason: str = Field(description="why it is kept, discarded or left alone, in words")
    bytes: int | None = Field(default=None, description="file size")
    mtime: float | None = Field(default=None, description="file modification time (seconds since 1970)")
    decision: Literal["keep", "discard"] | None = Field(default=None, description="a person's pending decision")


class Group(BaseModel):
    size: int
    members: list[Member]
    keeper_reason: str = Field(description="why the first member is the keeper: marked, or the keep policy's fact")


class NearestDistances(BaseModel):
    """Percentiles of each reference's distance to its nearest other reference: a scale for the threshold."""

    p1: float
    p5: float
    p50: float
    max: float


class ReviewStatus(BaseModel):
    """Where a review stands: decisions recorded, discards waiting, and whether they can be carried out."""

    saved: bool = Field(description="whether decisions are saved with the model (it was loaded from a folder)")
    decisions: int
    pending_discards: int = Field(description="files marked discarded and not yet moved")
    move_to: str | None = Field(description="where an apply moves discarded files (chosen when the server started)")
    can_apply: bool
    apply_refusal: str | None = Field(description="why discarded files cannot be moved, when they cannot")
    manifests: list[str] = Field(
        description="undo manifests of the applies on this model not undone yet, oldest first: this server's, and "
        "those an earlier server or the command line left in the folder for discarded files"
    )


class Duplicates(BaseModel):
    threshold: float
    k: int
    keep: str
    tiers: list[str] = Field(description="the tiers of the members listed")
    total: int = Field(description="number of groups at this threshold")
    offset: int
    limit: int
    groups: list[Group]
    nearest: NearestDistances
    review: ReviewStatus


class MapColours(BaseModel):
    column: str = Field(
        description='"cluster" (k-means clusters of the embeddings), "folder" (of each image file) or a column'
    )
    kind: Literal["category", "number"]
    values: list[int | float | None] = Field(
        description="per point: the number of its category (an index into categories), or its value (null: none)"
    )
    categories: list[str] = Field(default=[], description="category names, the most common first")
    counts: list[int] = Field(default=[], description="references of each category in the whole collection")
    min: float | None = Field(default=None, description="numbers: the smallest value in the whole collection")
    max: float | None = None


class Map(BaseModel):
    total: int = Field(description="references in the model (the points may be an even sample of them)")
    method: Literal["tsne", "pca"]
    saved: bool = Field(description="the map saved with the model (lookalike map), not computed by this server")
    seconds: float = Field(description="time the layout and the clustering took when they were computed")
    note: str = Field(description='why "auto" gave PCA rather than t-SNE, and how to get t-SNE (else empty)')
    explained_variance: list[float] = Field(description="PCA: share of the variance along each axis; t-SNE: empty")
    clusters: int = Field(description="number of k-means clusters")
    columns: list[str] = Field(description="what color= accepts")
    index: list[int]
    label: list[int | str]
    path: list[str | None] = Field(description="each point's file (names that are not UTF-8 escaped); null: none")
    version: list[str | None] = Field(description="each point's file version, for its thumbnail's address (v=)")
    x: list[float]
    y: list[float]
    cluster: list[int] = Field(description="k-means cluster of each point, 0 the largest")
    color: MapColours


class Error(BaseModel):
    detail: str


def _not_a_boolean(value: object) -> object:
    # JSON true is not reference 1, though pydantic reads a boolean as an integer; 627.0 is 627, as JSON Schema says.
    if isinstance(value, bool):
        raise ValueError("a reference position is an integer, not true or false")
    return value


Position = Annotated[int, BeforeValidator(_not_a_boolean)]


class _Request(BaseModel):
    """A request body: a field it does not know is refused (a typo would otherwise be ignored silently)."""

    model_config = ConfigDict(extra="forbid")


class _OneReference(_Request):
    index: Position = Field(ge=0, description="the reference decided on")
    path: str | None = Field(
        default=None,
        max_length=4096,
        description="the path of `index` as the page listed it: if that position holds another file now "
        "(an apply or undo changed the positions), the decision is refused with 409",
    )


class FileDecision(_OneReference):
    """Keep this reference in its group, or clear its keep or discard decision."""

    action: Literal["keep", "clear"]
    other: None = Field(default=None, description="not used")
    other_path: None = Field(default=None, description="not used")


class PairDecision(_OneReference):
    """Discard this reference as a duplicate of ``other`` (its keeper), or mark the two not duplicates."""

    action: Literal["discard", "not-duplicate"]
    other: Position = Field(ge=0, description="discard: the keeper it duplicates; not-duplicate: the other reference")
    other_path: str | None = Field(default=None, max_length=4096, description="the same check as `path`, for `other`")


Decision = Annotated[FileDecision | PairDecision, Field(discriminator="action")]


class Confirmation(_Request):
    confirm: Literal[True] = Field(description="must be true: files are moved")


class UndoRequest(_Request):
    manifest: str = Field(description="a manifest returned by /api/apply")


class MoveResult(BaseModel):
    manifest: str | None
    moved: list[str] = Field(description="files moved (by an undo: files back in place)")
    skipped: list[dict[str, str]]
    summary: str
    references: int = Field(description="references in the model now")


class CalibrationAt(BaseModel):
    """What a threshold finds and links by mistake on this collection (copies of a sample of its own photos)."""

    threshold: float
    recall: dict[str, float] = Field(description="share of each kind of copy found")
    false_links_per_pair: float = Field(description="pairs of distinct photos taken for copies, per pair")
    expected_false_links: float = Field(description="false copies expected among all the collection's pairs")
    expected_lookalikes: float = Field(description="pairs of distinct photos listed as look-alikes (never acted on)")
    summary: str


class MatchedPair(BaseModel):
    a: Reference | None = Field(description="the served model's reference (None: an unmatched image of the other set)")
    b: Reference | None = Field(description="the other set's image (`index`: its position there)")
    distance: float | None


class MatchPage(BaseModel):
    """One-to-one pairs of the served model with a second set (``lookalike serve MODEL --match SET``)."""

    threshold: float
    max_threshold: float = Field(description="the threshold the pairs were found at: the largest one can ask for")
    pairs: int = Field(description="pairs within the threshold")
    unmatched_a: int = Field(description="references without a pair within the threshold")
    unmatched_b: int = Field(description="images of the other set without a pair")
    show: str
    total: int = Field(description="rows of what is shown")
    offset: int
    items: list[MatchedPair]


# ------------------------------------------------------------------------------------------------- audit
class NotAnIssue(_OneReference):
    """The audit's finding of kind ``finding`` on this reference is not an issue: never report it again."""

    action: Literal["not-an-issue"]
    finding: str = Field(min_length=1, max_length=64, description="the kind of the finding (blurry, label-error...)")


class Relabel(_OneReference):
    """This reference's class should be ``label``."""

    action: Literal["relabel"]
    label: str = Field(min_length=1, max_length=1000, description="the new label")


class DatasetVerdict(_OneReference):
    """Exclude this reference from the dataset, or forget every verdict on it."""

    action: Literal["exclude", "forget"]


AuditDecision = Annotated[NotAnIssue | Relabel | DatasetVerdict, Field(discriminator="action")]


class AuditKind(BaseModel):
    model_config = ConfigDict(extra="allow")
    count: int
    expected_precision: float | None
    meaning: str


class AuditFinding(BaseModel):
    kind: str
    score: float
    reason: str
    suggested_label: str | None
    label: str | None
    split: str | None
    decision: str | None
    items: list[Reference] = Field(description="the references involved, the one at fault first")
    paths: list[str] = Field(description="the files involved (also those that are not references: unreadable ones)")


class AuditPage(BaseModel):
    kinds: dict[str, AuditKind]
    kind: str | None
    total: int
    offset: int
    limit: int
    findings: list[AuditFinding]
    saved: bool = Field(description="whether verdicts are saved with the model (else they last while the server runs)")
