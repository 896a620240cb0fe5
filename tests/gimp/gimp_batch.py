"""Runs inside a real GIMP 3 (python-fu-eval): drives the plug-in through the PDB.

``run_gimp_test.py`` writes a JSON config and starts GIMP with a one-line batch script that
runs this file. Three modes:

- ``drive``: build images from the raw RGBA bytes the host wrote, call every LayerBridge
  procedure non-interactively (server address as an argument), record each call's status and
  message, the layer tree after it, and save the images as XCF and OpenRaster.
- ``readback``: load the saved XCF files in a fresh GIMP and dump every layer's name, offsets,
  size, place in the tree and pixels (read through GIMP's API), and the job parasites.
- ``undo`` (in the GUI binary ``gimp-3.0`` on a virtual X display): show each image in a
  window, run decompose and split (and regenerate where the engine has it), then press
  Ctrl+Z and Ctrl+Y in that window as a user would, recording the image's state after every
  step. GIMP's PDB has no undo, so a real keystroke is the only way to perform one.

It writes JSON (and raw pixel files) for the host to check; it asserts nothing itself except
that GIMP calls work, so a failure in the product shows up as data the host reports on.
"""

import hashlib
import json
import os
import subprocess
import time

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
            "visible": item.get_visible(),
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
    started = time.monotonic()
    result = procedure.run(config)
    seconds = time.monotonic() - started
    status = result.index(0)
    message = None
    if status != Gimp.PDBStatusType.SUCCESS and result.length() > 1:
        message = str(result.index(1))
    status = status.value_nick.upper().replace("-", "_")
    return {"status": status, "message": message, "seconds": seconds}


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

    # The dialogs' ranges, as GIMP shows them.
    procedure = Gimp.get_pdb().lookup_procedure("layerbridge-decompose")
    spec = procedure.find_argument("layers")
    results["layers_range"] = [spec.minimum, spec.maximum, spec.get_default_value()]

    # Decompose, then split one of the new layers, in one image. Without a model engine,
    # the steps and resolution a diffusion engine wants (remembered by GIMP's dialog) too.
    image, layer = new_image(width, height, source)
    results["undo_enabled"] = image.undo_is_enabled()
    tuning = fast or {"steps": 30, "resolution": 640}
    record(
        results,
        "decompose",
        call("layerbridge-decompose", image, [layer], server=url, **tuning, seed=seed, layers=0),
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

    # An image larger than the server takes: refused before anything is sent, or worked on
    # at a reduced size and scaled back.
    if config.get("small_url"):
        image, layer = new_image(width, height, source)
        for label, reduce in (("too_large", False), ("reduced", True)):
            record(
                results,
                label,
                call(
                    "layerbridge-decompose",
                    image,
                    [layer],
                    server=config["small_url"],
                    seed=seed,
                    reduce=reduce,
                ),
                image,
            )

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


# --- undo and redo with real keystrokes --------------------------------------------------

UNDO, REDO = "ctrl+z", "ctrl+y"  # GIMP 3.0's default shortcuts for edit-undo and edit-redo
KEY_WAIT_S = 15.0  # how long a keystroke may take to show in the image


def xdotool(*arguments: str) -> list[str]:
    result = subprocess.run(
        ["xdotool", *arguments], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout.split()


def image_window(image: Gimp.Image) -> str:
    """The X window showing the image, focused so that keystrokes reach it. Its title holds
    "<name>-<image id>.<display id> (", GIMP's default title format."""
    pattern = rf".-{image.get_id()}\.[0-9]+ \("  # a leading "-" would read as an option
    window = xdotool("search", "--sync", "--onlyvisible", "--name", pattern)[0]
    # No window manager runs: focus the window directly; keystrokes sent with XTEST then go
    # through GTK's normal path (GTK ignores synthetic XSendEvent keys).
    xdotool("windowfocus", "--sync", window)
    return window


def state(image: Gimp.Image) -> dict:
    """What an undo must restore: the layer tree with each layer's pixel digest, and the job
    record the plug-in attaches."""
    return {"layers": tree(image.get_layers()), "parasite": parasite(image)}


def press(window: str, keys: str, image: Gimp.Image) -> dict:
    """Press keys in the image's window and wait until the image changes (an undo or redo
    is applied in GIMP's main loop, after xdotool returns)."""
    before = state(image)
    xdotool("windowfocus", "--sync", window)
    xdotool("key", "--clearmodifiers", keys)
    started = time.monotonic()
    while time.monotonic() - started < KEY_WAIT_S:
        after = state(image)
        if after != before:
            return {"keys": keys, "changed": True, "seconds": time.monotonic() - started} | after
        time.sleep(0.1)
    return {"keys": keys, "changed": False, "seconds": KEY_WAIT_S} | before


def shown(image: Gimp.Image) -> tuple[Gimp.Display, str]:
    """A display (window) for the image, and that window's X id. The undo history starts
    empty (disabling undo frees it): building the image left steps that an extra Ctrl+Z
    would undo, which would hide a procedure that leaves two steps instead of one."""
    image.undo_disable()
    image.undo_enable()
    display = Gimp.Display.new(image)
    Gimp.displays_flush()
    return display, image_window(image)


def close(display: Gimp.Display, image: Gimp.Image) -> None:
    display.delete()  # the next image's window is then the only one
    image.delete()


def undo_decompose_and_split(config: dict, source: bytes) -> dict:
    """decompose, split one of its layers, then undo both and redo both."""
    url, seed, fast = config["url"], config["seed"], config["tuning"]
    image, layer = new_image(config["width"], config["height"], source)
    display, window = shown(image)
    steps = {"before": state(image)}
    steps["decompose"] = call(
        "layerbridge-decompose", image, [layer], server=url, **fast, seed=seed, layers=0
    ) | state(image)
    group = next((item for item in image.get_layers() if item.is_group()), None)
    children = group.get_children() if group else []
    if len(children) >= 2:
        steps["split"] = call(
            "layerbridge-split", image, [children[-2]], server=url, **fast, seed=seed, layers=0
        ) | state(image)
        steps["undo_split"] = press(window, UNDO, image)
    steps["undo_decompose"] = press(window, UNDO, image)
    steps["redo_decompose"] = press(window, REDO, image)
    if "split" in steps:
        steps["redo_split"] = press(window, REDO, image)
    close(display, image)
    return steps


def undo_regenerate(config: dict, source: bytes) -> dict:
    """regenerate the only layer in place (inside a selection), undo it, redo it."""
    image, layer = new_image(config["width"], config["height"], source)
    x, y, w, h = config["selection"]
    image.select_rectangle(Gimp.ChannelOps.REPLACE, x, y, w, h)
    display, window = shown(image)
    steps = {"before": state(image)}
    steps["regenerate"] = call(
        "layerbridge-regenerate",
        image,
        [layer],
        server=config["url"],
        **config["tuning"],
        seed=config["seed"],
        prompt=config["prompt"],
    ) | state(image)
    steps["undo_regenerate"] = press(window, UNDO, image)
    steps["redo_regenerate"] = press(window, REDO, image)
    close(display, image)
    return steps


def undo(config: dict) -> dict:
    with open(config["source"], "rb") as file:
        source = file.read()
    results = {"decompose": undo_decompose_and_split(config, source)}
    if config["regenerate"]:
        results["regenerate"] = undo_regenerate(config, source)
    return results


MODES = {"drive": drive, "readback": readback, "undo": undo}


# --- screenshots (make screenshots) -------------------------------------------------------


def screenshots(config: dict) -> dict:
    """GIMP as a user sees it, on the virtual display: the sample poster decomposed (the
    Layers dock shows the new group), then the Decompose dialog open. xwd (x11-apps) writes
    the screen; the host turns it into PNG."""
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(config["poster"]))
    display = Gimp.Display.new(image)
    window = image_window(image)
    xdotool("windowmove", "--sync", window, "0", "0")
    xdotool("windowsize", "--sync", window, "1280", "800")
    outcome = call(
        "layerbridge-decompose",
        image,
        image.get_layers()[-1:],
        server=config["url"],
        seed=config["seed"],
        layers=0,
    )
    Gimp.displays_flush()
    time.sleep(3)  # GIMP's main loop draws the canvas and the Layers dock
    subprocess.run(["xwd", "-root", "-silent", "-out", config["decomposed"]], check=True)
    # The dialog blocks this script until it closes: a helper waits for it, photographs the
    # screen and presses Escape (Cancel) in it.
    helper = (
        "win=$(xdotool search --sync --onlyvisible --name 'Decompose Image into Layers' "
        "| head -1); "
        "xdotool windowmove --sync $win 420 120; sleep 2; "
        f"xwd -root -silent -out {config['dialog']}; "
        "xdotool windowfocus --sync $win key Escape"
    )
    subprocess.Popen(["sh", "-c", helper])
    procedure = Gimp.get_pdb().lookup_procedure("layerbridge-decompose")
    dialog_config = procedure.create_config()
    dialog_config.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
    dialog_config.set_property("image", image)
    dialog_config.set_core_object_array("drawables", image.get_layers()[-1:])
    dialog_config.set_property("server", config["url"])
    procedure.run(dialog_config)
    display.delete()
    image.delete()
    return {"decompose": outcome}


MODES["screenshots"] = screenshots


def main():
    with open(os.environ["LAYERBRIDGE_GIMP_TEST"]) as file:
        config = json.load(file)
    results = MODES[config["mode"]](config)
    with open(config["results"], "w") as file:
        json.dump(results, file, indent=1)


main()
