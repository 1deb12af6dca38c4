from emoboost.methods import METHODS, get_method
from emoboost.methods.catalog import _block, _notes, catalog, describe, format_method
from emoboost.methods.trainer import TorchSegmentMethod


def test_notes_come_from_the_comment_beside_or_above_each_key():
    src = '''X = {
        "a": 1,  # beside a
        # above b,
        # two lines
        "b": [1, 2],
        "c": "x",
    }'''
    assert _notes(src) == {"a": "beside a", "b": "above b, two lines"}


def test_block_reads_only_the_named_literal():
    src = 'A = {"k": 1,  # from A\n}\nTRAIN: dict = {\n    "k": 2,  # from TRAIN\n    "n": {"x": 1},\n}\nB = {"k": 3}  # not\n'
    assert _notes(_block(src, "TRAIN")) == {"k": "from TRAIN"}
    assert _block(src, "MISSING") == ""


def concrete_methods() -> set[type]:
    """Every concrete Method subclass defined in a module of ``emoboost/methods/`` (found by importing them)."""
    import importlib
    import inspect
    import pkgutil

    import emoboost.methods as pkg
    from emoboost.methods.base import Method

    found = set()
    for mod in pkgutil.iter_modules(pkg.__path__):
        m = importlib.import_module(f"emoboost.methods.{mod.name}")
        found |= {c for _, c in inspect.getmembers(m, inspect.isclass)
                  if issubclass(c, Method) and not inspect.isabstract(c) and c.__module__ == m.__name__}
    return found


def test_catalog_lists_every_method_with_its_inputs():
    infos = {i.name: i for i in catalog()}
    assert {get_method(n) for n in infos} == concrete_methods()  # a method module left unregistered fails here
    assert all(i.summary for i in infos.values())
    assert infos["msemoboost"].requires == ("ssl", "mfcc", "spec")
    assert not infos["logreg"].summary.startswith("Base class")  # its own docstring, not Method's


def test_describe_gives_what_the_method_accepts_with_its_defaults():
    for name in METHODS:
        info = describe(name)
        built = get_method(name)(["a", "b"]).params
        assert {p.name: p.default for p in info.parameters} == built
        loop = [p.name for p in info.parameters if p.training_loop]
        if issubclass(get_method(name), TorchSegmentMethod):
            assert set(loop) <= set(TorchSegmentMethod.declared_params()) and "batch_size" in loop
        else:
            assert loop == []
        flags = [p.training_loop for p in info.parameters]
        assert flags == sorted(flags)  # the method's own parameters first


def test_notes_reach_the_page():
    info = describe("msemoboost")
    notes = {p.name: p.note for p in info.parameters}
    assert "bounded" in notes["enh_bound"] and "guidance_hidden" in notes["lstm_hidden"]
    assert "retrain" in notes["refit"]  # the training loop's comment block above the key
    page = format_method(info, long=True)
    assert "enh_bound" in page and "training loop" in page and "Song et al." in page
