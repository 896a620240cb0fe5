"""Build hook: the GIMP plug-in's files travel inside the package.

``layerbridge install-gimp-plugin`` copies them from there when LayerBridge was installed from
a wheel; a source checkout or an editable install finds them in ``gimp_plugin/`` instead. The
plug-in stays in ``gimp_plugin/layerbridge_gimp/`` because that folder is what GIMP runs.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PLUGIN = Path(__file__).parent / "gimp_plugin" / "layerbridge_gimp"


class BuildWithGimpPlugin(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "layerbridge" / "gimp_plugin"
        self.mkpath(str(target))
        for source in sorted(PLUGIN.glob("*.py")):
            self.copy_file(str(source), str(target / source.name))


setup(cmdclass={"build_py": BuildWithGimpPlugin})
