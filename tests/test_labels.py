"""plumbing/labels.py: the tutorial's label file, and names or indices -> one class index."""

import pytest

from adversarial.plumbing.errors import UserError
from adversarial.plumbing.labels import NUM_CLASSES, class_index, label, labels


def test_there_are_1000_labels_one_of_them_twice():
    assert len(labels()) == NUM_CLASSES == 1000
    # ImageNet's one exact duplicate: "crane" the bird (134) and the machine (517).
    duplicates = [i for i, text in enumerate(labels()) if labels().count(text) > 1]
    assert duplicates == [134, 517]
    assert label(134) == label(517) == "crane"


def test_the_tutorials_labels():
    assert label(263) == "Pembroke, Pembroke Welsh corgi"
    assert label(1) == "goldfish, Carassius auratus"
    assert label(0) == "tench, Tinca tinca"


def test_label_accepts_a_tensor_index():
    torch = pytest.importorskip("torch")
    assert label(torch.tensor(263)) == "Pembroke, Pembroke Welsh corgi"


@pytest.mark.parametrize(
    "query", ["goldfish", "Carassius auratus", "GOLDFISH", "  goldfish ", "1", 1, " 1 "]
)
def test_class_index_from_any_synonym_or_index(query):
    assert class_index(query) == 1


def test_class_index_of_the_full_label():
    assert class_index("Pembroke, Pembroke Welsh corgi") == 263
    assert class_index("pembroke welsh corgi") == 263
    assert class_index("0") == 0
    assert class_index("999") == 999


def test_every_label_finds_its_own_index_or_says_it_is_ambiguous():
    ambiguous = []
    for index, text in enumerate(labels()):
        try:
            assert class_index(text) == index
        except UserError as err:
            assert "ambiguous" in str(err) and f"{index}: {text}" in str(err)
            ambiguous.append(index)
    # A whole label wins over another class's synonym ("cardigan" is the sweater, 474;
    # the corgi is "Cardigan, Cardigan Welsh corgi"); only the duplicated "crane" needs an index.
    assert ambiguous == [134, 517]


def test_ambiguous_name_lists_every_candidate():
    with pytest.raises(UserError, match="ambiguous") as err:
        class_index("crane")
    message = str(err.value)
    assert "134: crane" in message
    assert "517: crane" in message


def test_unknown_name_is_a_user_error_with_a_hint():
    with pytest.raises(UserError, match="no ImageNet class is called 'goldfsh'") as err:
        class_index("goldfsh")
    assert "did you mean 'goldfish'" in str(err.value)


def test_nonsense_name_is_a_user_error():
    with pytest.raises(UserError, match="no ImageNet class"):
        class_index("definitely not a class")


@pytest.mark.parametrize("index", ["1000", "-1", 1000, -1, "123456789"])
def test_index_out_of_range_is_a_user_error(index):
    with pytest.raises(UserError, match=r"outside 0\.\.999"):
        class_index(index)


@pytest.mark.parametrize("query", ["--1", "²", "1.5", "+-1", ""])
def test_odd_numbers_are_user_errors_not_crashes(query):
    # "--1" and "²" used to pass str.isdigit() and then crash int() with a ValueError.
    with pytest.raises(UserError):
        class_index(query)
