"""Runs inside a real GIMP 3 (gimp-console, python-fu-eval): drives the plug-in through the PDB.

``run_gimp_test.py`` writes a JSON config and starts GIMP with a one-line batch script that
runs this file. Two modes:

- ``drive``: build images from the raw RGBA bytes the host wrote, call every LayerBridge
  procedure non-interactively (server address as an argument), record each call's status and
  message, the layer tree after it, and save the images as XCF and OpenRaster.
- ``readback``: load the saved XCF files in a fresh GIMP and dump every layer's name, offsets,
  size, place in the tree and pixels (read through GIMP's API), and the job parasites.

It writes JSON (and raw pixel files) for the host to check; it asserts nothing itself except
that GIMP calls work, so a failure in the product shows up as data the host reports on.
"""

import hashlib
import json
import os

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio  # noqa: E402

PIXELS = "R'G'B'A u8"


def read_layer(layer):
    rect = Gegl.Rectangle.new(0, 0, layer.get_width(), layer.get_height())
    return bytes(layer.get_buffer().get(rect, 1.0, PIXELS, Gegl.AbyssPolicy.NONE))


def new_image(width, height, pixels, name="source"):
    image = Gimp.Image.new(width, height, Gimp.ImageBaseType.RGB)
    layer = Gimp.Layer.new(
        image, name, width, height, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL
    )
    image.insert_layer(layer, None, 0)
    buffer = layer.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, width, height), PIXELS, pixels)
    buffer.flush()
    return image, layer


def tree(items, dump_dir=None, prefix=""):
    """The layer tree, top first as GIMP lists it, with each layer's pixel digest."""
    out = []
    for position, item in enumerate(items):
        offsets = item.get_offsets()
        node = {
            "name": item.get_name(),
            "x": offsets[-2],
            "y": offsets[-1],
            "width": item.get_width(),
            "height": item.get_height(),
            "group": item.is_group(),
        }
        if item.is_group():
            node["children"] = tree(item.get_children(), dump_dir, f"{prefix}{position}.")
        else:
            data = read_layer(item)
            node["sha256"] = hashlib.sha256(data).hexdigest()
            if dump_dir:
                path = os.path.join(dump_dir, f"{prefix}{position}.rgba")
                with open(path, "wb") as file:
                    file.write(data)
                node["dump"] = os.path.basename(path)
        out.append(node)
    return out


def parasite(image):
    found = image.get_parasite("layerbridge-job")
    return json.loads(bytes(found.get_data()).decode("utf-8")) if found else None


def call(name, image, drawables, **arguments):
    procedure = Gimp.get_pdb().lookup_procedure(name)
    if procedure is None:
        return {"status": "MISSING", "message": f"{name} is not registered"}
    config = procedure.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", drawables)
    for key, value in arguments.items():
        config.set_property(key, value)
    result = procedure.run(config)
    status = result.index(0)
    message = None
    if status != Gimp.PDBStatusType.SUCCESS and result.length() > 1:
        message = str(result.index(1))
    return {"status": status.value_nick.upper().replace("-", "_"), "message": message}


def record(results, label, outcome, image):
    outcome["layers"] = tree(image.get_layers())
    outcome["parasite"] = parasite(image)
    outcome["dirty"] = image.is_dirty()
    results[label] = outcome


def save(image, path):
    ok = Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path(path), None)
    if not ok:
        raise RuntimeError(f"saving {path} failed")


def drive(config):
    width, height = config["width"], config["height"]
    with open(config["source"], "rb") as file:
        source = file.read()
    url, seed, out = config["url"], config["seed"], config["out"]
    fast = config["tuning"]  # steps and resolution: the diffusion engines' fastest
    results = {}

    # Decompose, then split one of the new layers, in one image.
    image, layer = new_image(width, height, source)
    results["undo_enabled"] = image.undo_is_enabled()
    record(
        results,
        "decompose",
        call("layerbridge-decompose", image, [layer], server=url, **fast, seed=seed, layers=0),
        image,
    )
    group = next((item for item in image.get_layers() if item.is_group()), None)
    children = group.get_children() if group else []
    if len(children) >= 2:
        target = children[-2]  # index 1 from the bottom
        results["split_target"] = {"name": target.get_name(), "index": 1}
        record(
            results,
            "split",
            call("layerbridge-split", image, [target], server=url, **fast, seed=seed, layers=0),
            image,
        )
    save(image, os.path.join(out, "decompose.xcf"))
    save(image, os.path.join(out, "decompose.ora"))

    # Generate into an image of the source's size.
    image, layer = new_image(width, height, source)
    record(
        results,
        "generate",
        call(
            "layerbridge-generate",
            image,
            [layer],
            server=url,
            **fast,
            seed=seed,
            layers=0,
            prompt=config["prompt"],
        ),
        image,
    )
    save(image, os.path.join(out, "generate.xcf"))

    # Regenerate the only layer, with a rectangular selection sent as the mask.
    image, layer = new_image(width, height, source)
    x, y, w, h = config["selection"]
    image.select_rectangle(Gimp.ChannelOps.REPLACE, x, y, w, h)
    record(
        results,
        "regenerate",
        call(
            "layerbridge-regenerate",
            image,
            [layer],
            server=url,
            **fast,
            seed=seed,
            prompt=config["prompt"],
        ),
        image,
    )
    save(image, os.path.join(out, "regenerate.xcf"))

    # Failures the user must understand: no server, another protocol version.
    image, layer = new_image(width, height, source)
    for label, address in (
        ("server_down", config["down_url"]),
        ("mismatch", config["mismatch_url"]),
    ):
        record(
            results,
            label,
            call("layerbridge-decompose", image, [layer], server=address, seed=seed),
            image,
        )
    for image in Gimp.get_images():
        image.delete()  # no stray images at exit
    return results


def readback(config):
    results = {}
    for name in config["files"]:
        path = os.path.join(config["out"], name)
        image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))
        dump = os.path.join(config["out"], "dump-" + name.split(".")[0])
        os.makedirs(dump, exist_ok=True)
        results[name] = {
            "size": [image.get_width(), image.get_height()],
            "layers": tree(image.get_layers(), dump),
            "parasite": parasite(image),
        }
        image.delete()
    return results


def main():
    with open(os.environ["LAYERBRIDGE_GIMP_TEST"]) as file:
        config = json.load(file)
    results = drive(config) if config["mode"] == "drive" else readback(config)
    with open(config["results"], "w") as file:
        json.dump(results, file, indent=1)


main()
