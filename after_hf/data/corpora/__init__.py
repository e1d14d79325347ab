"""One small reader per corpus layout; each yields ``Utterance`` rows and ``Skipped`` files (never a silent drop).

    READERS[name](root, **options) -> Iterator[Utterance | Skipped]
"""

from __future__ import annotations

from . import cremad, emodb, emovdb, folder, hub, iemocap, ravdess, savee, shemo, tess
from .base import AUDIO_EXTENSIONS, CorpusError, Rating, RatingsError, Skipped, Utterance

READERS = {
    "iemocap": iemocap.read,
    "ravdess": ravdess.read,
    "cremad": cremad.read,
    "emovdb": emovdb.read,
    "shemo": shemo.read,
    "emodb": emodb.read,
    "tess": tess.read,
    "savee": savee.read,
    "folder": folder.read,
    "hub": hub.read,
}

__all__ = ["READERS", "AUDIO_EXTENSIONS", "CorpusError", "Rating", "RatingsError", "Skipped", "Utterance"]
