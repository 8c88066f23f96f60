from pathlib import Path

import pytest

from iqa.data.datasets.base import DatasetError
from iqa.data.protocol import SplitProtocol
from iqa.data.records import ImageRecord


def synthetic_records(n_refs=20, per_ref=5):
    return [ImageRecord(Path(f"/d/r{r}_{k}.png"), float(k), f"r{r}", "blur") for r in range(n_refs) for k in range(per_ref)]


def references(records, indices):
    return {records[i].reference for i in indices}


def test_random_split_is_by_reference_and_disjoint():
    records = synthetic_records()
    split = SplitProtocol(split_index=3).split(records)
    parts = [references(records, p) for p in (split.train, split.val, split.test)]
    assert all(parts) and not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert len(parts[2]) == 4  # 20 % of 20 references
    assert len(split.train) + len(split.val) + len(split.test) == len(records)


def test_splits_differ_by_index_and_repeat_by_seed():
    records = synthetic_records()
    a, b = SplitProtocol(split_index=0).split(records), SplitProtocol(split_index=1).split(records)
    assert a.test != b.test
    assert SplitProtocol(split_index=0).split(records) == a


def test_val_fraction_zero_and_train_fraction():
    records = synthetic_records()
    full = SplitProtocol(val_fraction=0).split(records)
    assert full.val == [] and len(full.train) == 80
    part = SplitProtocol(val_fraction=0, train_fraction=0.25).split(records)
    assert len(references(records, part.train)) == 4 and part.test == full.test


def test_official_split_used_and_validation_carved_from_train():
    records = [ImageRecord(Path(f"/d/{i}.jpg"), 1.0, str(i), official_split="test" if i < 3 else "train")
               for i in range(13)]
    split = SplitProtocol(val_fraction=0.2).split(records)
    assert split.test == [0, 1, 2]
    assert set(split.val) <= set(range(3, 13)) and len(split.val) == 2


def test_split_file(tmp_path):
    records = synthetic_records(n_refs=2, per_ref=2)
    split_file = tmp_path / "split.csv"
    split_file.write_text("img_name,split\nr0_0.png,train\nr0_1.png,training\nr1_0.png,val\nr1_1.png,test\n")
    split = SplitProtocol(split_file=str(split_file)).split(records)
    assert (split.train, split.val, split.test) == ([0, 1], [2], [3])
    split_file.write_text("img_name,split\nr0_0.png,train\n")
    with pytest.raises(DatasetError, match="assigns no split"):
        SplitProtocol(split_file=str(split_file)).split(records)


@pytest.mark.parametrize("key,value", [("test_fraction", 1.0), ("val_fraction", -0.1), ("train_fraction", 0.0)])
def test_bad_fractions_name_the_key(key, value):
    with pytest.raises(ValueError, match=f"protocol.{key}"):
        SplitProtocol(**{key: value})
