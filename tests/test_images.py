"""plumbing/images.py: every image mode Pillow reads becomes the same RGB crop; 8-bit round trip."""

import numpy as np
import pytest
import torch
from PIL import Image

from adversarial.plumbing.errors import UserError
from adversarial.plumbing.images import (
    from_uint8,
    load_image,
    load_image_tensor,
    resize_and_crop,
    save_image,
    to_uint8,
)

EXIF_ORIENTATION = 0x0112


def pixels(path):
    return np.asarray(load_image(path))


def mode_of(path):
    with Image.open(path) as image:
        return image.mode


def test_greyscale_becomes_grey_rgb(tmp_path):
    grey = np.arange(0, 256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    assert mode_of(tmp_path / "grey.png") == "L"
    rgb = pixels(tmp_path / "grey.png")
    assert rgb.shape == (16, 16, 3)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], grey)


def test_rgba_transparent_pixels_are_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red stays red
    rgba[0, 1] = (255, 0, 0, 0)  # fully transparent red shows the white background
    rgba[0, 2] = (0, 0, 0, 128)  # half-transparent black is mid-grey on white
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert mode_of(tmp_path / "rgba.png") == "RGBA"
    rgb = pixels(tmp_path / "rgba.png")
    assert tuple(rgb[0, 0]) == (255, 0, 0)
    assert tuple(rgb[0, 1]) == (255, 255, 255)
    assert all(abs(int(v) - 127) <= 1 for v in rgb[0, 2])
    assert tuple(rgb[3, 3]) == (255, 255, 255)  # the zeroed rest: transparent black -> white


def test_greyscale_with_alpha_is_composited_on_white(tmp_path):
    la = np.zeros((2, 2, 2), dtype=np.uint8)
    la[0, 0] = (0, 255)  # opaque black
    Image.fromarray(la).save(tmp_path / "la.png")
    assert mode_of(tmp_path / "la.png") == "LA"
    rgb = pixels(tmp_path / "la.png")
    assert tuple(rgb[0, 0]) == (0, 0, 0)
    assert tuple(rgb[1, 1]) == (255, 255, 255)


def palette_image():
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 - 2) * 3)  # 0: red, 1: blue
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    return image


def test_palette_image_uses_its_palette(tmp_path):
    palette_image().save(tmp_path / "palette.png")
    assert mode_of(tmp_path / "palette.png") == "P"
    rgb = pixels(tmp_path / "palette.png")
    assert tuple(rgb[0, 0]) == (255, 0, 0)
    assert tuple(rgb[0, 1]) == (0, 0, 255)


def test_palette_transparency_is_composited_on_white(tmp_path):
    palette_image().save(tmp_path / "palette_t.png", transparency=1)  # blue is transparent
    with Image.open(tmp_path / "palette_t.png") as image:
        assert image.mode == "P" and image.info.get("transparency") is not None
    rgb = pixels(tmp_path / "palette_t.png")
    assert tuple(rgb[0, 0]) == (255, 0, 0)
    assert tuple(rgb[0, 1]) == (255, 255, 255)


def test_palette_gif_transparency_is_composited_on_white(tmp_path):
    palette_image().save(tmp_path / "palette_t.gif", transparency=1)
    rgb = pixels(tmp_path / "palette_t.gif")
    assert tuple(rgb[0, 0]) == (255, 0, 0)
    assert tuple(rgb[0, 1]) == (255, 255, 255)


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    levels = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(levels).save(tmp_path / "grey16.png")
    with Image.open(tmp_path / "grey16.png") as image:
        assert image.mode.startswith("I")  # Pillow really read it as 16-bit
    rgb = pixels(tmp_path / "grey16.png")
    assert rgb.dtype == np.uint8
    # Pillow's plain convert() would clip all but the first to 255.
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 1, 128, 255])
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    cmyk = Image.new("CMYK", (8, 8), (0, 0, 0, 0))  # no ink: white
    cmyk.paste((255, 0, 0, 0), (0, 0, 4, 8))  # full cyan on the left half
    cmyk.save(tmp_path / "cmyk.jpg", quality=100)
    with Image.open(tmp_path / "cmyk.jpg") as image:
        assert image.mode == "CMYK"
    rgb = pixels(tmp_path / "cmyk.jpg").astype(int)
    np.testing.assert_allclose(rgb[4, 1], (0, 255, 255), atol=8)
    np.testing.assert_allclose(rgb[4, 6], (255, 255, 255), atol=8)


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_is_applied(tmp_path, orientation):
    image = Image.new("RGB", (40, 20), "white")
    image.paste((255, 0, 0), (0, 0, 10, 20))  # red on the left edge
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    loaded = load_image(tmp_path / "rotated.jpg")
    assert loaded.size == (20, 40)
    rgb = np.asarray(loaded).astype(int)
    # 6 = rotate 90 clockwise to display (left edge ends up on top); 8 = counter-clockwise.
    red_row = 0 if orientation == 6 else 39
    assert rgb[red_row, 10, 0] > 200 and rgb[red_row, 10, 1] < 60
    assert rgb[39 - red_row, 10, 1] > 200  # the opposite edge stays white


def test_one_pixel_image_becomes_the_model_input_shape(tmp_path):
    Image.new("RGB", (1, 1), (255, 0, 0)).save(tmp_path / "dot.png")
    x = load_image_tensor(tmp_path / "dot.png")
    assert x.shape == (1, 3, 224, 224)
    assert x.dtype == torch.float32
    torch.testing.assert_close(x[0, 0], torch.ones(224, 224))
    torch.testing.assert_close(x[0, 1:], torch.zeros(2, 224, 224))


def test_non_square_image_is_resized_then_centre_cropped(tmp_path):
    image = np.zeros((100, 300, 3), dtype=np.uint8)
    image[:, 100:200] = 255  # a white centre third, black sides
    Image.fromarray(image).save(tmp_path / "wide.png")
    x = load_image_tensor(tmp_path / "wide.png")
    assert x.shape == (1, 3, 224, 224)
    # 300x100 -> 672x224, centre 224 columns = exactly the white third.
    assert x[0, :, :, 5:-5].min() > 0.99


def test_a_224_image_loads_unchanged(tmp_path):
    pixels = np.random.default_rng(2).integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "crop.png")
    x = load_image_tensor(tmp_path / "crop.png")
    np.testing.assert_array_equal(x[0].permute(1, 2, 0).numpy(), pixels / np.float32(255))


def torchvision_crop(image):
    """The tutorial's own preprocessing, minus Normalize: the reference for ours."""
    from torchvision import transforms

    crop = transforms.Compose(
        [transforms.Resize(224), transforms.CenterCrop(224), transforms.ToTensor()]
    )
    return crop(image).unsqueeze(0)


@pytest.mark.parametrize(
    "size",
    [(600, 400), (400, 600), (224, 224), (225, 224), (300, 20), (20, 300), (1, 1), (513, 227)],
)
def test_crop_equals_torchvisions_resize_and_center_crop(size):
    pixels = np.random.default_rng(sum(size)).integers(
        0, 256, size=(*size[::-1], 3), dtype=np.uint8
    )
    image = Image.fromarray(pixels)
    assert torch.equal(from_uint8(resize_and_crop(image)), torchvision_crop(image))


def test_crop_of_every_sample_photo_equals_torchvisions(photos):
    for path in photos.values():
        assert torch.equal(load_image_tensor(path), torchvision_crop(load_image(path)))


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "is a folder"),
        (lambda p: p.write_bytes(b"not an image at all\n"), "not an image file"),
    ],
    ids=["missing", "folder", "not-an-image"],
)
def test_bad_image_is_a_user_error(tmp_path, make, problem):
    path = tmp_path / "input.png"
    make(path)
    with pytest.raises(UserError, match=problem) as err:
        load_image(path)
    assert str(path) in str(err.value)


def test_to_uint8_rounds_rather_than_truncates():
    x = torch.tensor([0.4, 0.6, 127.5, 128.4, 254.4, 254.6]) / 255
    out = to_uint8(x.view(1, 1, 1, -1).expand(1, 3, 1, -1))
    assert out.shape == (1, 6, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 128, 254, 255])


def test_to_uint8_clips_outside_the_unit_range():
    x = torch.tensor([-5.0, -0.01, 1.01, 7.0]).view(1, 1, -1).expand(3, 1, -1)
    out = to_uint8(x)  # (3, H, W) accepted too
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 255, 255])


def test_to_uint8_is_channel_last():
    x = torch.zeros(1, 3, 2, 5)
    x[0, 0] = 1.0  # red
    out = to_uint8(x)
    assert out.shape == (2, 5, 3)
    assert (out[..., 0] == 255).all() and (out[..., 1:] == 0).all()


def test_uint8_grid_round_trips_exactly():
    grid = torch.arange(256, dtype=torch.float32).div(255).view(1, 1, 16, 16).repeat(1, 3, 1, 1)
    assert torch.equal(from_uint8(to_uint8(grid)), grid)
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    np.testing.assert_array_equal(to_uint8(from_uint8(levels)), levels)


def test_save_image_writes_the_rounded_pixels(tmp_path):
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 20, 30, generator=generator)
    save_image(x, tmp_path / "out.png")
    with Image.open(tmp_path / "out.png") as image:
        assert image.mode == "RGB" and image.size == (30, 20)
        np.testing.assert_array_equal(np.asarray(image), to_uint8(x))
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temporary left behind


@pytest.mark.parametrize("suffix", [".xyz", ".jpg", ".pdf", ".eps", ""])
def test_save_image_refuses_all_but_lossless_formats_before_writing(tmp_path, suffix):
    with pytest.raises(UserError, match=r"save the image as \.png or"):
        save_image(torch.zeros(1, 3, 2, 2), tmp_path / f"out{suffix}")
    assert list(tmp_path.iterdir()) == []


def test_extreme_strip_is_trimmed_before_resizing(tmp_path):
    # Resize(224) alone would upscale this 1x100000 strip to 224x22400000 pixels.
    strip = np.zeros((1, 100_000, 3), dtype=np.uint8)
    strip[:, 50_000 - 4 : 50_000 + 4] = 255  # only the centre is white: only it may show
    path = tmp_path / "strip.png"
    Image.fromarray(strip).save(path)
    x = load_image_tensor(path)
    assert x.shape == (1, 3, 224, 224)
    assert x.min() > 0.99


def test_moderately_wide_image_is_cropped_exactly_as_resize_then_crop(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(20, 300, 3), dtype=np.uint8)  # 15:1, under the trim
    path = tmp_path / "wide.png"
    Image.fromarray(pixels).save(path)
    assert torch.equal(load_image_tensor(path), torchvision_crop(Image.fromarray(pixels)))


def test_a_checked_png_that_would_not_hold_the_judged_pixels_is_refused(tmp_path):
    from adversarial.plumbing.images import checked_image_writer

    on_grid = torch.full((1, 3, 224, 224), 128 / 255)  # the crop every image is read at
    checked_image_writer(on_grid, tmp_path / "ok.png")(tmp_path / "ok.png")
    assert torch.equal(load_image_tensor(tmp_path / "ok.png"), on_grid)
    off_grid = on_grid + 0.3 / 255  # a PNG rounds it back to 128
    with pytest.raises(UserError, match="reloaded image differs from the judged one"):
        checked_image_writer(off_grid, tmp_path / "off.png")(tmp_path / "off.png")
