"""core/data/image_folders.py: a ZIP of class folders read as a Dataset, and every hostile ZIP refused."""

import io
import stat
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data import DataError, DataLimits
from core.data.image_folders import class_samples, inspect_image_zip, read_image_folders
from core.data.image_limits import ImageLimits
from core.spec import DatasetSpec
from core.storage.uploads import display_name, resolve, store_bytes

MiB = 1 << 20
ROOT = Path(__file__).resolve().parents[3]
COLOURS = {"blue": (0, 0, 255), "green": (0, 255, 0), "red": (255, 0, 0)}


def png(colour=(255, 0, 0), size=(12, 10), kind="PNG") -> bytes:
    """An image of one colour, size (width, height)."""
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, kind)
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG of only a signature, an IHDR chunk declaring width x height, and IEND: no pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def make_zip(path: Path, members, folders=()) -> Path:
    """A ZIP of (name, bytes) or (ZipInfo, bytes) members, plus explicit folder entries."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for folder in folders:
            archive.writestr(zipfile.ZipInfo(folder), b"")
        for name, data in members:
            archive.writestr(name, data)
    return path


def good_members(root: str = "", per_class: int = 3):
    return [(f"{root}{name}/{i:03d}.png", png(colour)) for name, colour in COLOURS.items() for i in range(per_class)]


def images(**fields) -> DatasetSpec:
    return DatasetSpec(source="images", image_size=(8, 6), **fields)


def refused(path: Path, match: str, limits: DataLimits = DataLimits(), image_limits: ImageLimits = ImageLimits(),
            spec: DatasetSpec | None = None) -> str:
    with pytest.raises(DataError, match=match) as caught:
        read_image_folders(path, path.name, spec or images(), limits, image_limits)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"'{path.name}'")
    return message


# -- a good ZIP ----------------------------------------------------------------------------


@pytest.mark.parametrize("color_mode, channels", [("rgb", 3), ("grayscale", 1)])
def test_a_zip_of_class_folders_loads_raw_pixels_with_sorted_class_names(tmp_path, color_mode, channels):
    path = make_zip(tmp_path / "colours.zip", good_members(per_class=3) + [("red/extra.jpg", png((255, 0, 0),
                                                                                                  kind="JPEG"))])
    dataset = read_image_folders(path, "colours.zip", images(color_mode=color_mode))
    assert dataset.x.shape == (10, 8, 6, channels) and dataset.x.dtype == np.float32
    assert dataset.task.class_names == ("blue", "green", "red") and dataset.task.kind == "multiclass"
    assert dataset.task.input_shape == (8, 6, channels)
    assert dataset.y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    assert dataset.class_counts() == {"blue": 3, "green": 3, "red": 4}
    # Raw pixels: the blue PNGs are (0, 0, 255) everywhere; grayscale is Pillow's luma.
    first = dataset.x[0]
    if color_mode == "rgb":
        assert first[..., 2].min() == 255.0 and first[..., :2].max() == 0.0
    else:
        assert np.all(first == round(255 * 114 / 1000))  # L = R*299/1000 + G*587/1000 + B*114/1000
    assert dataset.pixel_range == 255.0  # the model's first layer rescales by it


def test_one_folder_wrapping_the_class_folders_is_looked_through_and_two_classes_are_binary(tmp_path):
    members = [(f"pets/{name}/{i}.png", png(colour)) for name, colour in (("dogs", (9, 9, 9)), ("cats", (1, 1, 1)))
               for i in range(2)]
    path = make_zip(tmp_path / "pets.zip", members, folders=("pets/", "pets/cats/", "pets/dogs/"))
    index = inspect_image_zip(path, "pets.zip")
    assert index.root == "pets/" and index.class_counts() == {"cats": 2, "dogs": 2}
    dataset = read_image_folders(path, "pets.zip", images())
    assert dataset.task.kind == "binary" and dataset.task.class_names == ("cats", "dogs")
    assert dataset.name == "pets"


def test_files_the_operating_system_adds_are_skipped(tmp_path):
    members = good_members() + [("__MACOSX/red/._000.png", b"\x00\x05\x16\x07"), ("red/.DS_Store", b"\x00\x00"),
                                ("blue/Thumbs.db", b"junk")]
    dataset = read_image_folders(make_zip(tmp_path / "mac.zip", members), "mac.zip", images())
    assert dataset.num_samples == 9


def test_16_bit_grayscale_is_scaled_to_8_bits_not_clipped(tmp_path):
    wide = io.BytesIO()
    Image.new("I;16", (6, 8), 40_000).save(wide, "PNG")
    path = make_zip(tmp_path / "scans.zip", good_members() + [("red/scan.png", wide.getvalue())])
    dataset = read_image_folders(path, "scans.zip", images(color_mode="grayscale"))
    assert np.all(dataset.x[-1] == round(40_000 / 257))  # last of red, sorted: 000-002.png, scan.png


def test_class_samples_gives_the_first_images_of_every_class_as_uint8(tmp_path):
    path = make_zip(tmp_path / "colours.zip", good_members(per_class=4))
    samples = class_samples(path, "colours.zip", images(), per_class=2)
    assert list(samples) == ["blue", "green", "red"]
    assert all(array.shape == (2, 8, 6, 3) and array.dtype == np.uint8 for array in samples.values())
    assert samples["red"][..., 0].min() == 255


def test_reading_writes_nothing_to_disk(tmp_path, stacklab_home):
    path = make_zip(tmp_path / "colours.zip", good_members())
    before = sorted(p for p in tmp_path.rglob("*"))
    read_image_folders(path, "colours.zip", images())
    assert sorted(p for p in tmp_path.rglob("*")) == before


# -- hostile ZIPs: refused from the central directory, before any image is read --------------


def test_a_zip_bomb_by_ratio_is_refused(tmp_path):
    path = make_zip(tmp_path / "bomb.zip", good_members() + [("red/bomb.png", bytes(2 * MiB))])
    message = refused(path, r"holds 'red/bomb.png', which inflates [\d,]+x .* over the limit of 200x; files like this "
                            r"are zip bombs.*STACKLAB_MAX_ZIP_COMPRESSION_RATIO")
    assert "2.0 MiB" in message


def test_a_zip_bomb_by_total_size_is_refused(tmp_path):
    # 20 members of 1 MiB of zeros: each under the ratio check's floor, together over the total.
    members = good_members() + [(f"red/fill{i}.png", bytes(MiB)) for i in range(20)]
    refused(make_zip(tmp_path / "many.zip", members),
            r"'many.zip' inflates to 20.0 MiB, over the limit of 16.0 MiB.*STACKLAB_MAX_ZIP_UNCOMPRESSED_BYTES",
            image_limits=ImageLimits(max_uncompressed_bytes=16 * MiB))


def test_a_path_out_of_the_archive_is_refused(tmp_path):
    path = make_zip(tmp_path / "slip.zip", good_members() + [("red/../../outside.png", png())])
    refused(path, r"holds 'red/../../outside.png', which points outside the archive \(a '..' part\)")
    assert not (tmp_path.parent / "outside.png").exists()


@pytest.mark.parametrize("member", ["/etc/red/1.png", "C:/red/1.png"])
def test_an_absolute_path_is_refused(tmp_path, member):
    refused(make_zip(tmp_path / "absolute.zip", good_members() + [(member, png())]),
            rf"holds '{member}', an absolute path\. Zip one folder per class")


def test_a_backslash_path_is_refused(tmp_path):
    refused(make_zip(tmp_path / "windows.zip", good_members() + [("red\\..\\1.png", png())]),
            r"a path with backslashes")


def test_a_symbolic_link_is_refused(tmp_path):
    link = zipfile.ZipInfo("red/link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    refused(make_zip(tmp_path / "link.zip", good_members() + [(link, b"/etc/passwd")]),
            r"holds 'red/link.png', a symbolic link; a dataset holds image files only")


def test_too_many_entries_are_refused_from_the_end_record(tmp_path):
    refused(make_zip(tmp_path / "flood.zip", good_members(per_class=4)),
            r"'flood.zip' declares 12 entries, over the limit of 10 \(STACKLAB_MAX_ZIP_ENTRIES\)\. Use fewer images",
            image_limits=ImageLimits(max_entries=10))


def test_a_central_directory_larger_than_its_end_record_declares_is_refused(tmp_path):
    path = make_zip(tmp_path / "crafted.zip", [(f"red/{'x' * 120}{i}.png", png()) for i in range(20)])
    data = bytearray(path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    data[end + 8:end + 12] = struct.pack("<HH", 2, 2)  # this disk's entries, all entries: "2"
    path.write_bytes(bytes(data))
    refused(path, r"'crafted.zip' has a central directory of 3.4 KiB, more than 2 entries \(STACKLAB_MAX_ZIP_ENTRIES\) "
                  r"can take: it holds more entries than its end record declares",
            image_limits=ImageLimits(max_entries=2))


def test_too_many_images_for_the_sample_limit_are_refused(tmp_path):
    refused(make_zip(tmp_path / "rows.zip", good_members(per_class=4)), r"holds 12 images, over the limit of 10",
            limits=DataLimits(max_rows=10))


def test_a_png_header_claiming_a_huge_pixel_count_is_refused_before_decoding(tmp_path):
    path = make_zip(tmp_path / "pixels.zip", good_members() + [("red/huge.png", png_header(100_000, 100_000))])
    refused(path, r"holds 'red/huge.png', whose header declares 10,000,000,000 pixels, over the limit of "
                  r"25,000,000 \(STACKLAB_MAX_IMAGE_PIXELS\); images like this are decompression bombs")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_png_header_over_the_pixel_limit_is_refused_with_its_size(tmp_path):
    path = make_zip(tmp_path / "pixels.zip", good_members() + [("red/big.png", png_header(6_000, 6_000))])
    refused(path, r"holds 'red/big.png', whose header declares 6,000 x 6,000 = 36,000,000 pixels, over the limit")
    # Past twice the limit Pillow's own fence (Image.MAX_IMAGE_PIXELS, set to the limit) refuses it first.
    refused(path, r"whose header declares 36,000,000 pixels, over the limit of 1,000,000",
            image_limits=ImageLimits(max_image_pixels=1_000_000))


def test_a_file_that_is_not_an_image_is_refused(tmp_path):
    refused(make_zip(tmp_path / "notes.zip", good_members() + [("red/notes.txt", b"my notes")]),
            r"holds 'red/notes.txt', which is not an image \(accepted: .bmp, .gif, .jpeg, .jpg, .png\)\. Remove it")


def test_an_image_suffix_on_something_else_is_refused_when_decoded(tmp_path):
    refused(make_zip(tmp_path / "fake.zip", good_members() + [("red/fake.png", b"#!/bin/sh\necho hi\n")]),
            r"holds 'red/fake.png', which is not a readable BMP/GIF/JPEG/PNG image")


def test_an_empty_class_folder_is_refused(tmp_path):
    refused(make_zip(tmp_path / "empty.zip", good_members(), folders=("yellow/",)),
            r"has an empty class folder 'yellow/': every class needs at least one image")


@pytest.mark.parametrize("members, match", [
    ([("cats/1.png", png()), ("cats/2.png", png())], r"holds 1 class folder \('cats'\) with images; a classifier "
                                                     r"needs at least 2"),
    ([], r"holds 0 class folders with images"),
])
def test_fewer_than_two_classes_are_refused(tmp_path, members, match):
    refused(make_zip(tmp_path / "one.zip", members), match)


def test_an_image_outside_any_class_folder_is_refused(tmp_path):
    refused(make_zip(tmp_path / "loose.zip", good_members() + [("loose.png", png())]),
            r"holds 'loose.png' outside any class folder")
    refused(make_zip(tmp_path / "wrapped.zip", good_members("data/") + [("data/loose.png", png())]),
            r"holds 'data/loose.png' outside any class folder; images go in one folder per class .* inside data/")


def test_a_file_that_is_not_a_zip_is_refused(tmp_path):
    path = tmp_path / "photo.zip"
    path.write_bytes(png())
    refused(path, r"'photo.zip' is not a ZIP archive")


def test_images_that_would_not_fit_in_memory_are_refused_before_decoding(tmp_path):
    refused(make_zip(tmp_path / "colours.zip", good_members()),
            r"holds 9 images; at 8x6 rgb they need 5.1 KiB as float32, over the limit of 1.0 KiB",
            limits=DataLimits(max_array_bytes=1024))


def test_a_regression_task_is_refused(tmp_path):
    refused(make_zip(tmp_path / "colours.zip", good_members()), r"its task cannot be 'regression'",
            spec=images(task="regression"))


def test_the_limits_read_the_environment():
    limits = ImageLimits.from_env({"STACKLAB_MAX_IMAGE_PIXELS": "1e6", "STACKLAB_MAX_ZIP_ENTRIES": "50",
                                   "STACKLAB_MAX_ZIP_COMPRESSION_RATIO": "12.5"})
    assert (limits.max_image_pixels, limits.max_entries, limits.max_compression_ratio) == (1_000_000, 50, 12.5)
    with pytest.raises(ValueError, match="STACKLAB_MAX_IMAGE_FILE_BYTES must be a positive whole number"):
        ImageLimits.from_env({"STACKLAB_MAX_IMAGE_FILE_BYTES": "-1"})


def test_a_zip_upload_is_stored_by_its_content_and_reads_from_the_store(tmp_path):
    data = make_zip(tmp_path / "colours.zip", good_members()).read_bytes()
    ref = store_bytes(data, "colours.zip")
    assert resolve(ref).suffix == ".zip" and resolve(ref).read_bytes() == data
    assert read_image_folders(resolve(ref), display_name(ref), images()).num_samples == 9


@pytest.mark.slow
def test_the_example_makes_a_zip_loads_it_and_trains_headless(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "image_folder_zip.py"), "--epochs", "1",
                           "--per-class", "6", "--size", "16", "--keep", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "x (18, 16, 16, 3) (" in done.stdout and "{'circle': 6, 'square': 6, 'triangle': 6}" in done.stdout
    assert "finished after 1 epochs" in done.stdout
    assert inspect_image_zip(tmp_path / "shapes.zip", "shapes.zip").root == "shapes/"
