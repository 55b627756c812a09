"""The pure helpers of ``benchmarks/text_likelihood.py`` on tiny inputs with exact expected values:
window starts at a stride, the even cap on windows, the windows themselves, the word-list file
reader and the share of words found in it. No corpus, no download, no training."""

import importlib.util
import math
import pathlib

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "text_likelihood.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("text_likelihood_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_window_starts_non_overlapping_drops_the_tail(bench):
    assert bench.window_starts(10, length=4, stride=4) == [0, 4]  # positions 8, 9 are an incomplete tail
    assert bench.window_starts(12, length=4, stride=4) == [0, 4, 8]
    assert bench.window_starts(3, length=4, stride=4) == []
    assert bench.window_starts(4, length=4, stride=4) == [0]


def test_window_starts_stride_one_and_in_between(bench):
    assert bench.window_starts(7, length=4, stride=1) == [0, 1, 2, 3]
    assert bench.window_starts(10, length=4, stride=3) == [0, 3, 6]
    # the default is the benchmark's length 256, non-overlapping: the test split's 10,618 windows
    assert len(bench.window_starts(2_718_418)) == 2_718_418 // 256
    with pytest.raises(ValueError):
        bench.window_starts(10, length=4, stride=0)


def test_select_windows_even_spread(bench):
    assert bench.select_windows(10, 4) == [0, 2, 5, 7]
    assert bench.select_windows(10, 5) == [0, 2, 4, 6, 8]
    assert bench.select_windows(10, 1) == [0]
    assert bench.select_windows(3, None) == [0, 1, 2]
    assert bench.select_windows(3, 7) == [0, 1, 2]


def test_make_windows_contents(bench):
    codes = torch.arange(10)
    windows, starts = bench.make_windows(codes, length=4, stride=3)
    assert starts == [0, 3, 6]
    assert windows.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    windows, starts = bench.make_windows(codes, length=4, stride=1, cap=3)  # 7 windows, capped to 3
    assert starts == [0, 2, 4]
    assert windows.tolist() == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]]
    windows, starts = bench.make_windows(torch.arange(3), length=4)
    assert windows.shape == (0, 4) and starts == []


def test_stride_one_windows_count_each_character_up_to_length_times(bench):
    # the reference's protocol: interior characters are scored `length` times, the edges fewer
    windows, _ = bench.make_windows(torch.arange(8), length=3, stride=1)
    counts = torch.bincount(windows.flatten(), minlength=8).tolist()
    assert counts == [1, 2, 3, 3, 3, 3, 2, 1]


def test_load_word_list_lowercases_and_keeps_letters_only(bench, tmp_path):
    path = tmp_path / "words"
    path.write_text("Apple\napple\nAaron's\ncafé\nzoo\n\nB\nx-ray\n", encoding="utf-8")
    assert bench.load_word_list(path) == frozenset({"apple", "zoo", "b"})


def test_word_list_share_exact(bench):
    words = frozenset({"the", "cat", "sat", "on", "mat"})
    # edges dropped: "he cat sat on th" -> cat sat on (3 of 3); "xx the qat mat yy" -> the qat mat (2 of 3)
    result = bench.word_list_share(["he cat sat on th", "xx the qat mat yy"], words)
    assert result == {"share": 5 / 6, "found": 5, "tokens": 6}
    result = bench.word_list_share(["he cat sat on th", "xx the qat mat yy"], words, drop_edges=False)
    assert result == {"share": 5 / 10, "found": 5, "tokens": 10}
    # runs of spaces are one separator; a text of one or two tokens contributes nothing with edges dropped
    assert bench.word_list_share(["a  the   cat b", "cat", "cat sat"], words) == {"share": 1.0, "found": 2, "tokens": 2}
    empty = bench.word_list_share([], words)
    assert math.isnan(empty["share"]) and empty["tokens"] == 0


def test_render_from_a_minimal_result(bench):
    meta = {
        "command": "python benchmarks/text_likelihood.py", "date": "d", "seed": 0, "torch": "t", "pyro": "p",
        "cpu": "c", "threads": 1, "omp_wait_policy": "PASSIVE", "git": "g", "wall_seconds": 60.0,
        "load_start": "l0", "load_end": "l1", "autocast_choice": "measured faster", "curve": None,
        "samples_file": "s.txt", "sample_lines": ["the cat"], "real_line": "the mat", "note": "",
        "precision": {"batch_size": 16, "timed_steps": 4, "fp32": {"median_s": 1.0, "examples_per_s": 16.0},
                      "bf16": {"median_s": 0.5, "examples_per_s": 32.0}, "bf16_speedup": 2.0},
        "training": {"backbone": "transformer_small", "backbone_options": {}, "num_parameters": 3_181_083,
                     "batch_size": 16, "steps": 10, "examples": 160, "characters": 40_960, "epoch_fraction": 0.001,
                     "train_sequences": 191_000, "wall_seconds": 30.0, "autocast": "bfloat16", "valid_windows": 128,
                     "last_valid_bits_per_char": 4.0},
        "test": {"bits_per_char": 3.5, "bits_per_char_stderr": 0.01, "flow_bits_per_char": 3.4,
                 "reconstruction_bits_per_char": 0.1, "windows": 8, "windows_available": 10, "cap": 8, "stride": 256,
                 "repeats": 2, "stderr_kind": "passes", "seconds": 6.0},
        "words": {"sample_steps": 100, "sample_num": 1, "samples": {"share": 0.5, "tokens": 2},
                  "real": {"share": 0.9, "tokens": 10}, "sample_seconds": 1.0, "list_size": 5},
    }
    markdown = bench.render(meta)
    assert "**3.500 ± 0.010**" in markdown
    assert "8 / 10 (capped by --test-windows, spread evenly)" in markdown
    assert "| bf16 | 16 | 0.500 | 32.0 |" in markdown
    assert "1.41 bits/char on text8" in markdown


def test_word_list_share_min_letters(bench):
    words = frozenset({"a", "s", "cat", "on"})
    # edges dropped -> "a s cat qq on": all 5 tokens; 2+ letters -> cat qq on: 2 of 3
    assert bench.word_list_share(["x a s cat qq on y"], words) == {"share": 4 / 5, "found": 4, "tokens": 5}
    assert bench.word_list_share(["x a s cat qq on y"], words, min_letters=2) == {"share": 2 / 3, "found": 2, "tokens": 3}


def test_unigram_bits_per_char_exact(bench):
    # training frequencies 1/2, 1/4, 1/4 over codes 0, 1, 2; test text all code 0 -> 1 bit; all code 1 -> 2 bits
    train = [0, 0, 1, 2]
    assert bench.unigram_bits_per_char(train, [0, 0], num_classes=3) == pytest.approx(1.0, abs=1e-12)
    assert bench.unigram_bits_per_char(train, [1, 2], num_classes=3) == pytest.approx(2.0, abs=1e-12)
    assert bench.unigram_bits_per_char(train, [0, 1], num_classes=3) == pytest.approx(1.5, abs=1e-12)
