"""Only what setup.cfg cannot say: quart_app's subpackages found, plus the two data folders
that live at the top of the repository and install inside the package (see setup.cfg)."""
from setuptools import find_packages, setup

setup(packages=find_packages(include=["quart_app", "quart_app.*"])
      + ["quart_app.sql", "quart_app.static"])
