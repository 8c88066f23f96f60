import numpy as np
import pytest
import torch

from iqa.data.transforms import MultiCrop


def image(h=40, w=60):
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_test_crops_are_deterministic_per_image_id():
    crops = MultiCrop(16, 5, train=False)
    a, b = crops(image(), 7), crops(image(), 7)
    assert a.shape == (5, 3, 16, 16) and a.dtype == torch.uint8 and torch.equal(a, b)
    assert not torch.equal(a, crops(image(), 8))


def test_ten_crop_geometry():
    img = image()
    crops = MultiCrop(16, 10, train=False, mode="ten")(img, 0)
    chw = torch.from_numpy(img).permute(2, 0, 1)
    assert torch.equal(crops[0], chw[:, :16, :16]) and torch.equal(crops[3], chw[:, -16:, -16:])
    assert torch.equal(crops[5], crops[0].flip(-1))


def test_small_images_are_resized_up_not_crashed_on():
    crops = MultiCrop(64, 2, train=True)(image(20, 30), 0)
    assert crops.shape == (2, 3, 64, 64)


def test_whole_image_mode_and_bad_settings():
    assert MultiCrop(None, 1, train=False)(image(), 0).shape == (1, 3, 40, 60)
    with pytest.raises(ValueError, match="crop_size=null"):
        MultiCrop(None, 3, train=False)
    with pytest.raises(ValueError, match="n_test_crops=10"):
        MultiCrop(16, 4, train=False, mode="ten")


def test_center_mode_takes_the_central_crop_and_flips_only_in_training():
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    centre = torch.from_numpy(image[4:36, 14:46]).permute(2, 0, 1)
    test_crop = MultiCrop(32, 1, train=False, mode="center")(image, image_id=3)
    assert torch.equal(test_crop[0], centre)
    torch.manual_seed(0)
    seen = {MultiCrop(32, 1, train=True, hflip=True, mode="center")(image, image_id=3)[0].flip(-1).equal(centre)
            for _ in range(20)}
    assert seen == {True, False}  # the centre crop, mirrored about half the time
    with pytest.raises(ValueError, match="data.n_train_crops=1"):
        MultiCrop(32, 3, train=True, mode="center")
    with pytest.raises(ValueError, match="data.train_crop_mode='ten'"):
        MultiCrop(32, 10, train=True, mode="ten")
