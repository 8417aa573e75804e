"""Model building, checkpoint loading and device selection."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
from torchvision.models.detection import FasterRCNN_ResNet50_FPN_V2_Weights, FasterRCNN_ResNet50_FPN_Weights

from frcnn.core.coco_names import COCO_INSTANCE_CATEGORY_NAMES
from frcnn.model import FrcnnError, architecture_of, build_detector, load_model, read_checkpoint, resolve_device
from frcnn.synthetic.checkpoints import detector_state, save_checkpoint

CPU = torch.device("cpu")


def test_coco_names_match_the_weights_metadata():
    assert COCO_INSTANCE_CATEGORY_NAMES == FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]
    assert COCO_INSTANCE_CATEGORY_NAMES == FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1.meta["categories"]


@pytest.mark.parametrize("name", ["v1", "v2"])
def test_official_format_state_dict_loads_every_tensor(checkpoints, name):
    model = load_model(name, CPU, imgsz=96, weights=checkpoints[name])
    expected = torch.load(checkpoints[name], weights_only=True)
    loaded = model.module.state_dict()
    for key, tensor in expected.items():
        assert torch.equal(loaded[key], tensor), key
    assert model.class_names == COCO_INSTANCE_CATEGORY_NAMES
    assert model.module.transform.min_size == (96,) and model.module.transform.max_size == 160
    assert (model.min_size, model.max_size) == (96, 160)
    assert architecture_of(expected) == name


def test_builder_state_dict_and_wrapped_checkpoint_load(tmp_path):
    state = detector_state("v1", seed=1)  # with num_batches_tracked, as model.state_dict() saves it
    plain = save_checkpoint(tmp_path / "plain.pth", state)
    wrapped = save_checkpoint(tmp_path / "wrapped.pth", {"model": state, "epoch": torch.tensor(3)})
    for path in (plain, wrapped):
        module = load_model("v1", CPU, imgsz=96, weights=path).module
        bias = module.roi_heads.box_predictor.cls_score.bias
        assert torch.equal(bias, state["roi_heads.box_predictor.cls_score.bias"])


@pytest.mark.parametrize("with_background", [False, True])
def test_fine_tuned_class_count_with_labels(tmp_path, with_background):
    path = save_checkpoint(tmp_path / "custom.pth", {"model": detector_state("v2", num_classes=3, boosted=False)})
    labels = tmp_path / "labels.txt"
    labels.write_text(("__background__\n" if with_background else "") + "kayak\npaddle\n")
    model = load_model("v2", CPU, imgsz=96, weights=path, labels=labels)
    assert model.class_names == ["__background__", "kayak", "paddle"]
    assert model.module.roi_heads.box_predictor.cls_score.out_features == 3


@pytest.fixture(scope="module")
def three_class_checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ft") / "ft.pth", detector_state("v1", num_classes=3, boosted=False))


def test_fine_tuned_labels_must_match_the_class_count(tmp_path, three_class_checkpoint):
    labels = tmp_path / "labels.txt"
    labels.write_text("kayak\npaddle\nbuoy\n")
    with pytest.raises(FrcnnError, match="names 3 classes, but the checkpoint predicts 2"):
        load_model("v1", CPU, weights=three_class_checkpoint, labels=labels)
    with pytest.raises(FrcnnError, match="--labels"):
        load_model("v1", CPU, weights=three_class_checkpoint)


def test_wrong_architecture_is_named(checkpoints):
    with pytest.raises(FrcnnError, match="is a v1 checkpoint, but --model asks for v2"):
        load_model("v2", CPU, weights=checkpoints["v1"])
    with pytest.raises(FrcnnError, match="is a v2 checkpoint, but --model asks for v1"):
        load_model("v1", CPU, weights=checkpoints["v2"])


def test_bad_checkpoint_files(tmp_path, checkpoints):
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    empty = tmp_path / "empty.pth"
    empty.touch()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(checkpoints["v1"].read_bytes()[: 10_000_000])
    tensor_only = save_checkpoint(tmp_path / "tensor.pth", torch.zeros(3))
    other_model = save_checkpoint(tmp_path / "other.pth", {"conv.weight": torch.zeros(1)})
    cases = {
        tmp_path / "missing.pth": "not found",
        text: "not a readable PyTorch checkpoint",
        empty: "empty",
        truncated: "not a readable PyTorch checkpoint",
        tensor_only: "holds no model state_dict",
        other_model: "not a Faster R-CNN",
    }
    for path, message in cases.items():
        with pytest.raises(FrcnnError, match=message):
            load_model("v1", CPU, weights=path)


def test_class_count_mismatch_between_state_and_model(tmp_path):
    state = detector_state("v1", boosted=False)
    state["roi_heads.box_predictor.bbox_pred.weight"] = torch.zeros(8, 1024)  # 2 classes' boxes, 91 scores
    path = save_checkpoint(tmp_path / "odd.pth", state)
    with pytest.raises(FrcnnError, match="size mismatch"):
        load_model("v1", CPU, weights=path)


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_weights_only_refuses_a_pickle_that_would_run_code(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": _RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(FrcnnError, match="refused to load"):
        read_checkpoint(path)
    assert not marker.exists()


def test_missing_weights_without_network_explain_the_way_out(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "cache"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(FrcnnError) as caught:
        load_model("v2", CPU)
    message = str(caught.value)
    assert "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth" in message
    assert str(tmp_path / "cache" / "hub" / "checkpoints") in message
    assert "--weights PATH" in message and "network is unreachable" in message


def test_devices():
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(FrcnnError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(FrcnnError, match="no CUDA GPU"):
            resolve_device("cuda:0")
    else:
        with pytest.raises(FrcnnError, match="does not exist"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_unknown_model_name():
    with pytest.raises(FrcnnError, match="unknown model"):
        build_detector("v3")


def test_a_text_file_given_as_weights_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("class names, one per line\nperson\ncar\n")  # 'c' reads as a pickle opcode
    with pytest.raises(FrcnnError) as caught:
        read_checkpoint(path)
    assert "not a readable PyTorch checkpoint" in str(caught.value)
    assert "Python objects" not in str(caught.value)
