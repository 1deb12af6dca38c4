import functools
import hashlib
import http.server
import threading

import numpy as np
import pytest
import torch

from builders import logmel_images as images
from emoboost.methods import Method, UtteranceSet, get_method
from emoboost.methods import spec_cnn as sc
from emoboost.methods.spec_cnn import FROM_SCRATCH, ResNet18, SpectrogramCNN

CLASSES = ["a", "b", "c"]


def test_resnet18_matches_torchvision_layout():
    # torchvision.models.resnet18(): 11,689,512 parameters, 122 state-dict entries (62 weights + BN buffers).
    net = ResNet18(1000, 3)
    assert sum(p.numel() for p in net.parameters()) == 11_689_512
    sd = net.state_dict()
    assert len(sd) == 122
    for key, shape in {"conv1.weight": (64, 3, 7, 7), "layer1.0.conv1.weight": (64, 64, 3, 3),
                       "layer2.0.downsample.0.weight": (128, 64, 1, 1), "layer2.0.downsample.1.running_var": (128,),
                       "layer4.1.bn2.num_batches_tracked": (), "fc.weight": (1000, 512)}.items():
        assert tuple(sd[key].shape) == shape


@pytest.mark.parametrize("arch", ["resnet18", "alexnet"])
@pytest.mark.parametrize("T", [100, 200, 300])  # 1, 2, 3 s at a 10 ms hop
def test_shapes_for_segment_lengths(arch, T):
    m = SpectrogramCNN(CLASSES, arch=arch, image_size=None)
    mod = m.build_module({"image": (T, 64)})
    m.mean_, m.std_ = torch.zeros(64), torch.ones(64)
    x = m.preprocess("image", torch.randn(2, T, 64))
    assert x.shape == (2, 1, T, 64)
    mod.eval()
    with torch.no_grad():
        assert mod(image=x).shape == (2, 3)
        assert mod.embed(image=x).shape == (2, 512 if arch == "resnet18" else 256)


def test_alexnet_rejects_tiny_images_and_unknown_arch():
    with pytest.raises(ValueError, match="too small"):
        SpectrogramCNN(CLASSES, arch="alexnet").build_module({"image": (300, 40)})
    with pytest.raises(ValueError, match="arch must be one of 'resnet18', 'alexnet'"):
        SpectrogramCNN(CLASSES, arch="vgg").build_module({"image": (300, 64)})


def test_none_like_weights_mean_from_scratch():
    for w in (None, "none", "None", ""):
        m = SpectrogramCNN(CLASSES, arch="resnet18", pretrained_weights=w)
        assert m.describe()["weights"] == FROM_SCRATCH
        assert m.build_module({"image": (100, 64)}).net.conv1.in_channels == 1


def test_image_size_resamples():
    m = SpectrogramCNN(CLASSES, image_size=[32, 16])
    m.mean_, m.std_ = torch.zeros(64), torch.ones(64)
    assert m.preprocess("image", torch.randn(3, 300, 64)).shape == (3, 1, 32, 16)
    m = SpectrogramCNN(CLASSES)  # default: 128 frames, native mel bins
    m.mean_, m.std_ = torch.zeros(80), torch.ones(80)
    x = torch.randn(2, 300, 80)
    y = m.preprocess("image", x)
    assert y.shape == (2, 1, 128, 80)
    assert torch.allclose(y.mean(), x.mean(), atol=0.05)  # a resampling, not a crop
    m.module_ = m.build_module({"image": (300, 80)})
    m.input_shapes_ = {"image": (300, 80)}
    assert m.module_(image=y).shape == (2, 3)
    assert m.describe()["input"] == "1 x 300 x 80 log-mel resampled to 128 x 80"


def test_learns_from_scratch_and_roundtrips(tmp_path):
    data = images()
    train, valid, test = data.subset(range(0, 42)), data.subset(range(42, 48)), data.subset(range(48, 60))
    m = get_method("spec_cnn")(CLASSES, image_size=None, max_epochs=5, patience=10, lr=1e-3, batch_size=8)
    m.fit(train, valid, seed=0)
    assert m.describe()["weights"] == FROM_SCRATCH
    assert m.module_.net.conv1.in_channels == 1
    assert (m.predict(test) == test.y).mean() >= 0.9
    np.testing.assert_allclose(m.mean_.numpy(), np.concatenate(train.features["logmel"]).mean((0, 1)), rtol=1e-4)
    p = m.predict_proba(test)
    m.save(tmp_path / "m")
    m2 = Method.load(tmp_path / "m")
    np.testing.assert_array_equal(m2.predict_proba(test), p)
    assert m2.describe()["weights"] == FROM_SCRATCH


def test_alexnet_learns_and_loads_weights(tmp_path):
    from emoboost.methods.alexnet import AlexNet

    data = images(n_utt=36, T=64, M=64)
    m = SpectrogramCNN(CLASSES, arch="alexnet", image_size=None, max_epochs=4, batch_size=8, lr=3e-4)
    m.fit(data.subset(range(24)), data.subset(range(24, 30)), seed=0)
    assert (m.predict(data.subset(range(30, 36))) == data.y[30:36]).mean() >= 0.8
    torch.manual_seed(3)
    full = AlexNet().state_dict()  # torchvision layout, classifier included
    torch.save(full, tmp_path / "alexnet.pth")
    m = SpectrogramCNN(CLASSES, arch="alexnet", pretrained_weights=str(tmp_path / "alexnet.pth"), max_epochs=1,
                       lr=0.0, image_size=None)
    m.fit(data.subset(range(12)), seed=0)
    torch.testing.assert_close(m.module_.net.features[3].weight, full["features.3.weight"])
    assert "alexnet.pth" in m.describe()["weights"] and m.describe()["weights"] != FROM_SCRATCH


def torchvision_like_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return ResNet18(1000, 3).state_dict()


def test_local_weights_file_is_loaded_and_reported(tmp_path):
    state = torchvision_like_state()
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    data = images(n_utt=12)
    m = SpectrogramCNN(CLASSES, arch="resnet18", pretrained_weights=str(path), max_epochs=1, lr=0.0)  # lr 0: weights stay
    m.fit(data, seed=0)
    net = m.module_.net
    assert net.conv1.in_channels == 3  # the image is replicated into ImageNet's RGB conv1
    torch.testing.assert_close(net.layer3[1].conv2.weight,
                               state["layer3.1.conv2.weight"])
    assert net.fc.weight.shape == (3, 512)  # a new head for the emotion classes
    desc = m.describe()["weights"]
    assert str(path) in desc and hashlib.sha256(path.read_bytes()).hexdigest() in desc
    # A saved model carries its own weights: loading never reads the ImageNet file again.
    m.save(tmp_path / "m")
    path.unlink()
    m2 = Method.load(tmp_path / "m")
    np.testing.assert_array_equal(m2.predict_proba(data), m.predict_proba(data))
    assert m2.describe()["weights"] == desc


def test_wrong_weights_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, bad)
    with pytest.raises(ValueError, match="not a torchvision resnet18"):
        SpectrogramCNN(CLASSES, arch="resnet18", pretrained_weights=str(bad), max_epochs=1).fit(images(n_utt=6))
    with pytest.raises(ValueError, match="does not exist"):
        SpectrogramCNN(CLASSES, arch="resnet18", pretrained_weights=str(tmp_path / "none.pth"), max_epochs=1).fit(images(n_utt=6))


@pytest.fixture
def local_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield served, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_imagenet_download_is_hash_checked(tmp_path, local_server, monkeypatch):
    served, base = local_server
    state = torchvision_like_state(1)
    tmp = served / "tmp.pth"
    torch.save(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    tmp.rename(served / f"resnet18-{digest[:8]}.pth")
    monkeypatch.setattr(sc, "RESNET18_URL", f"{base}/resnet18-{digest[:8]}.pth")
    got, desc = sc.read_resnet18_state_dict("imagenet", tmp_path / "hub")
    torch.testing.assert_close(got["conv1.weight"], state["conv1.weight"])
    assert (tmp_path / "hub" / f"resnet18-{digest[:8]}.pth").is_file() and digest in desc
    # A file whose content does not match the hash prefix in its name is refused.
    (served / "resnet18-00000000.pth").write_bytes((served / f"resnet18-{digest[:8]}.pth").read_bytes())
    monkeypatch.setattr(sc, "RESNET18_URL", f"{base}/resnet18-00000000.pth")
    with pytest.raises(ValueError, match="could not fetch"):
        sc.read_resnet18_state_dict("imagenet", tmp_path / "hub2")


def test_mel_bins_mismatch_rejected():
    data = images(n_utt=6)
    m = SpectrogramCNN(CLASSES, arch="resnet18", max_epochs=1).fit(data)
    other = UtteranceSet(["x"], np.array([0]), np.array(["z"]), {"logmel": [np.zeros((1, 24, 20), np.float32)]})
    with pytest.raises(ValueError, match="mel bins"):
        m.predict_proba(other)
