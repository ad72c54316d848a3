import torch

from recsys_peft.models.jagged import build_kjt, jagged_from_csr, jagged_from_padded


def test_padded_three_rows():
    # Histories [7, 5], [] and [3], padded with -1 to length 3.
    padded = torch.tensor([[7, 5, -1], [-1, -1, -1], [3, -1, -1]])

    values, lengths = jagged_from_padded(padded)

    assert values.tolist() == [7, 5, 3]
    assert lengths.tolist() == [2, 0, 1]


def test_padded_custom_pad():
    padded = torch.tensor([[0, 4], [9, 0]])

    values, lengths = jagged_from_padded(padded, pad=0)

    assert values.tolist() == [4, 9]
    assert lengths.tolist() == [1, 1]


def test_csr_three_rows_reordered():
    # Row 0 = [10, 11], row 1 = [], row 2 = [12, 13, 14]. They are read back as rows 2, 1, 0.
    offsets = torch.tensor([0, 2, 2, 5])
    values = torch.tensor([10, 11, 12, 13, 14])

    out_values, out_lengths = jagged_from_csr(offsets, values, torch.tensor([2, 1, 0]))

    assert out_values.tolist() == [12, 13, 14, 10, 11]
    assert out_lengths.tolist() == [3, 0, 2]


def test_csr_repeated_row():
    offsets = torch.tensor([0, 2, 2, 5])
    values = torch.tensor([10, 11, 12, 13, 14])

    out_values, out_lengths = jagged_from_csr(offsets, values, torch.tensor([0, 0]))

    assert out_values.tolist() == [10, 11, 10, 11]
    assert out_lengths.tolist() == [2, 2]


def test_csr_only_empty_rows():
    offsets = torch.tensor([0, 2, 2, 5])
    values = torch.tensor([10, 11, 12, 13, 14])

    out_values, out_lengths = jagged_from_csr(offsets, values, torch.tensor([1, 1, 1]))

    assert out_values.numel() == 0
    assert out_lengths.tolist() == [0, 0, 0]


def test_kjt_missing_key_empty():
    features = {"history": (torch.tensor([7, 5, 3]), torch.tensor([2, 0, 1]))}

    kjt = build_kjt(features, ["history", "recent"], batch_size=3)

    assert kjt.keys() == ["history", "recent"]
    assert kjt["history"].values().tolist() == [7, 5, 3]
    assert kjt["history"].lengths().tolist() == [2, 0, 1]
    assert kjt["recent"].values().numel() == 0
    assert kjt["recent"].lengths().tolist() == [0, 0, 0]


def test_kjt_key_order_follows_keys():
    features = {
        "b": (torch.tensor([4]), torch.tensor([1, 0])),
        "a": (torch.tensor([1, 2]), torch.tensor([0, 2])),
    }

    kjt = build_kjt(features, ["a", "b"], batch_size=2)

    assert kjt.values().tolist() == [1, 2, 4]
    assert kjt.lengths().tolist() == [0, 2, 1, 0]
    assert kjt.values().dtype == torch.long
