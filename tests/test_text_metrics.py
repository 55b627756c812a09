"""The text helpers of :mod:`pyro_bfn.metrics` (used by ``benchmarks/text_likelihood.py``) on tiny
inputs with exact expected values: window starts at a stride, the even cap on windows, the windows
themselves, the word-list file reader, the share of words found in it and the unigram baseline.
No corpus, no download, no training."""

import math

import pytest
import torch

from pyro_bfn.metrics import (
    load_word_list,
    make_windows,
    select_windows,
    unigram_bits_per_char,
    window_starts,
    word_list_share,
)


def test_window_starts_non_overlapping_drops_the_tail():
    assert window_starts(10, length=4, stride=4) == [0, 4]  # positions 8, 9 are an incomplete tail
    assert window_starts(12, length=4, stride=4) == [0, 4, 8]
    assert window_starts(3, length=4, stride=4) == []
    assert window_starts(4, length=4, stride=4) == [0]


def test_window_starts_stride_one_and_in_between():
    assert window_starts(7, length=4, stride=1) == [0, 1, 2, 3]
    assert window_starts(10, length=4, stride=3) == [0, 3, 6]
    # the default is the benchmark's length 256, non-overlapping: the test split's 10,618 windows
    assert len(window_starts(2_718_418)) == 2_718_418 // 256
    with pytest.raises(ValueError):
        window_starts(10, length=4, stride=0)


def test_select_windows_even_spread():
    assert select_windows(10, 4) == [0, 2, 5, 7]
    assert select_windows(10, 5) == [0, 2, 4, 6, 8]
    assert select_windows(10, 1) == [0]
    assert select_windows(3, None) == [0, 1, 2]
    assert select_windows(3, 7) == [0, 1, 2]


def test_make_windows_contents():
    codes = torch.arange(10)
    windows, starts = make_windows(codes, length=4, stride=3)
    assert starts == [0, 3, 6]
    assert windows.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    windows, starts = make_windows(codes, length=4, stride=1, cap=3)  # 7 windows, capped to 3
    assert starts == [0, 2, 4]
    assert windows.tolist() == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]]
    windows, starts = make_windows(torch.arange(3), length=4)
    assert windows.shape == (0, 4) and starts == []


def test_stride_one_windows_count_each_character_up_to_length_times():
    # the reference's protocol: interior characters are scored `length` times, the edges fewer
    windows, _ = make_windows(torch.arange(8), length=3, stride=1)
    counts = torch.bincount(windows.flatten(), minlength=8).tolist()
    assert counts == [1, 2, 3, 3, 3, 3, 2, 1]


def test_load_word_list_lowercases_and_keeps_letters_only(tmp_path):
    path = tmp_path / "words"
    path.write_text("Apple\napple\nAaron's\ncafé\nzoo\n\nB\nx-ray\n", encoding="utf-8")
    assert load_word_list(path) == frozenset({"apple", "zoo", "b"})


def test_word_list_share_exact():
    words = frozenset({"the", "cat", "sat", "on", "mat"})
    # edges dropped: "he cat sat on th" -> cat sat on (3 of 3); "xx the qat mat yy" -> the qat mat (2 of 3)
    result = word_list_share(["he cat sat on th", "xx the qat mat yy"], words)
    assert result == {"share": 5 / 6, "found": 5, "tokens": 6}
    result = word_list_share(["he cat sat on th", "xx the qat mat yy"], words, drop_edges=False)
    assert result == {"share": 5 / 10, "found": 5, "tokens": 10}
    # runs of spaces are one separator; a text of one or two tokens contributes nothing with edges dropped
    assert word_list_share(["a  the   cat b", "cat", "cat sat"], words) == {"share": 1.0, "found": 2, "tokens": 2}
    empty = word_list_share([], words)
    assert math.isnan(empty["share"]) and empty["tokens"] == 0


def test_word_list_share_min_letters():
    words = frozenset({"a", "s", "cat", "on"})
    # edges dropped -> "a s cat qq on": all 5 tokens; 2+ letters -> cat qq on: 2 of 3
    assert word_list_share(["x a s cat qq on y"], words) == {"share": 4 / 5, "found": 4, "tokens": 5}
    assert word_list_share(["x a s cat qq on y"], words, min_letters=2) == {"share": 2 / 3, "found": 2, "tokens": 3}


def test_unigram_bits_per_char_exact():
    # training frequencies 1/2, 1/4, 1/4 over codes 0, 1, 2; test text all code 0 -> 1 bit; all code 1 -> 2 bits
    train = [0, 0, 1, 2]
    assert unigram_bits_per_char(train, [0, 0], num_classes=3) == pytest.approx(1.0, abs=1e-12)
    assert unigram_bits_per_char(train, [1, 2], num_classes=3) == pytest.approx(2.0, abs=1e-12)
    assert unigram_bits_per_char(train, [0, 1], num_classes=3) == pytest.approx(1.5, abs=1e-12)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="stride"):
        window_starts(10, length=4, stride=0)
    with pytest.raises(ValueError, match="length"):
        window_starts(10, length=0)
    with pytest.raises(ValueError, match="cap"):
        select_windows(10, 0)
    with pytest.raises(ValueError, match="codes must be 1-D"):
        make_windows(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="min_letters"):
        word_list_share(["a b c"], {"b"}, min_letters=0)
    with pytest.raises(ValueError, match="num_classes"):
        unigram_bits_per_char([0, 1], [0], num_classes=1)
