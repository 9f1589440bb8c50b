"""Golden sets, scoring, replayed routing policies, cost-quality curves and router calibration."""

from ..router._cascade import Cascade, answer_key
from ..router._knn import Embedder, HashingEmbedder, KnnIndex, KnnScorer, focus, learn_boilerplate, make_embedder
from ._calibrate import Calibration, calibrate_knn, calibrate_length, loo_predictions, walk_many
from ._cascade import CascadeCalibration, apply_routed_cascade, calibrate_cascade, calibrate_routed_cascade
from ._golden import GoldenItem, GoldenSetError, load_golden
from ._metrics import SelectionRow, Summary, model_selection, split_by, summarise
from ._objective import CurvePoint, Objective, choose, pareto
from ._plot import curve_points, plot_cost_quality
from ._policies import PolicyResult, cascaded, oracle, routed, single
from ._record import calibrate_file, record_tiers
from ._records import RecordSet
from ._routerbench import load_routerbench
from ._run import EvalReport, ItemResult, run_golden, run_item
from ._scorers import Verdict, score

__all__ = [
    "Calibration",
    "Cascade",
    "CascadeCalibration",
    "CurvePoint",
    "Embedder",
    "EvalReport",
    "GoldenItem",
    "GoldenSetError",
    "HashingEmbedder",
    "ItemResult",
    "KnnIndex",
    "KnnScorer",
    "Objective",
    "PolicyResult",
    "RecordSet",
    "SelectionRow",
    "Summary",
    "Verdict",
    "answer_key",
    "apply_routed_cascade",
    "calibrate_cascade",
    "calibrate_file",
    "calibrate_knn",
    "calibrate_length",
    "calibrate_routed_cascade",
    "cascaded",
    "choose",
    "curve_points",
    "focus",
    "learn_boilerplate",
    "load_golden",
    "load_routerbench",
    "loo_predictions",
    "make_embedder",
    "model_selection",
    "oracle",
    "pareto",
    "plot_cost_quality",
    "record_tiers",
    "routed",
    "run_golden",
    "run_item",
    "score",
    "single",
    "split_by",
    "summarise",
    "walk_many",
]
