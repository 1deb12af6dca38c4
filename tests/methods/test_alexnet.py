import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest
import torch

from emoboost.methods import alexnet as ax

# torchvision.models.alexnet().state_dict(), written out by hand (torchvision is not installed here).
TORCHVISION_ALEXNET = {
    "features.0.weight": (64, 3, 11, 11),
    "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5),
    "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3),
    "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3),
    "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3),
    "features.10.bias": (256,),
    "classifier.1.weight": (4096, 9216),
    "classifier.1.bias": (4096,),
    "classifier.4.weight": (4096, 4096),
    "classifier.4.bias": (4096,),
    "classifier.6.weight": (1000, 4096),
    "classifier.6.bias": (1000,),
}


def fake_state(keys=TORCHVISION_ALEXNET, seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) for k, shape in keys.items()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A full-size torchvision-format AlexNet state dict (random values), as torch.save writes it."""
    state = fake_state()
    path = tmp_path_factory.mktemp("weights") / "alexnet-fake.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture
def features_file(tmp_path) -> tuple[Path, dict[str, torch.Tensor]]:
    state = fake_state({k: v for k, v in TORCHVISION_ALEXNET.items() if k.startswith("features.")}, seed=1)
    path = tmp_path / "alexnet-features.pth"
    torch.save(state, path)
    return path, state


def test_parameter_names_and_shapes_match_torchvision():
    with torch.device("meta"):  # shapes only: skip initialising 61 M parameters
        shapes = {k: tuple(v.shape) for k, v in ax.AlexNet().state_dict().items()}
    assert shapes == TORCHVISION_ALEXNET
    feats = {k: tuple(v.shape) for k, v in ax.AlexNet(features_only=True).state_dict().items()}
    assert feats == {k: v for k, v in TORCHVISION_ALEXNET.items() if k.startswith("features.")}


def test_imagenet_format_state_dict_loads_strictly(imagenet_file):
    path, state = imagenet_file
    model = ax.AlexNet()
    info = ax.load_alexnet_weights(model, path)
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    for k, v in state.items():
        assert torch.equal(loaded[k], v), k
    assert info.sha256 == sha256(path) and info.file == str(path)
    assert str(path) in info.describe() and info.sha256 in info.describe()
    assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
    # the features-only variant takes the convolutional part of the same file
    feats = ax.AlexNet(features_only=True)
    ax.load_alexnet_weights(feats, path)
    for k, v in feats.state_dict().items():
        assert torch.equal(v, state[k])
    bare = ax.AlexNet(features_only=True).features
    ax.load_alexnet_weights(bare, path)
    assert torch.equal(bare[10].weight, state["features.10.weight"])


def test_wrong_files_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        ax.load_alexnet_weights(ax.AlexNet(features_only=True), tmp_path / "missing.pth")
    bad = fake_state({"features.0.weight": (64, 1, 11, 11), "fc.weight": (3, 3)})
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"bad\.pth.*features\.0\.weight has shape.*missing features\.3"):
        ax.load_alexnet_weights(ax.AlexNet(features_only=True), tmp_path / "bad.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth: not a readable"):
        ax.load_alexnet_weights(ax.AlexNet(features_only=True), tmp_path / "junk.pth")


def test_mono_input_equals_replicated_rgb():
    torch.manual_seed(0)
    model = ax.AlexNet(features_only=True)
    x = torch.randn(2, 1, 120, 90)
    ref = model(x.expand(-1, 3, -1, -1))
    out = model.forward_mono(x)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="1, H, W"):
        model.forward_mono(torch.randn(2, 3, 120, 90))


@pytest.mark.parametrize("hw", [(300, 200), (200, 200), (100, 200), (63, 63)])
def test_feature_map_shape_matches_network(hw):
    model = ax.AlexNet(features_only=True)
    with torch.no_grad():
        out = model.forward_mono(torch.zeros(1, 1, *hw))
    assert tuple(out.shape[1:]) == ax.feature_map_shape(*hw)


def test_feature_map_of_a_3s_spectrogram_and_too_small_input():
    assert ax.feature_map_shape(300, 200) == (256, 8, 5)  # 10,240 values per segment
    with pytest.raises(ValueError, match="too small"):
        ax.feature_map_shape(62, 200)


def test_official_url_is_torchvisions():
    assert ax.IMAGENET_URL == "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"


@pytest.fixture
def http_dir(tmp_path):
    """Serve tmp_path/www on 127.0.0.1 (offline stand-in for download.pytorch.org)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_by_url_is_hash_checked_and_cached(http_dir, features_file, tmp_path, monkeypatch):
    root, base = http_dir
    src, state = features_file
    digest = sha256(src)
    name = f"alexnet-owt-{digest[:8]}.pth"  # torchvision's naming: sha256 prefix in the file name
    (root / name).write_bytes(src.read_bytes())
    cache = tmp_path / "cache"
    monkeypatch.setattr(ax, "IMAGENET_URL", f"{base}/{name}")
    model = ax.AlexNet(features_only=True)
    info = ax.load_alexnet_weights(model, "imagenet", model_dir=cache)
    assert torch.equal(model.features[0].weight, state["features.0.weight"])
    assert info.sha256 == digest and Path(info.file) == cache / name and info.source == "imagenet"
    # second load is served from the cache, not the server
    (root / name).unlink()
    info2 = ax.load_alexnet_weights(ax.AlexNet(features_only=True), f"{base}/{name}", model_dir=cache)
    assert info2.sha256 == digest
    # a file whose content does not match the hash in its name is rejected
    wrong = f"alexnet-owt-{'0' * 8}.pth"
    (root / wrong).write_bytes(src.read_bytes())
    with pytest.raises(ValueError, match="could not fetch"):
        ax.load_alexnet_weights(ax.AlexNet(features_only=True), f"{base}/{wrong}", model_dir=cache)
