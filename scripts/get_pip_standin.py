"""Stand-in for the get-pip bootstrap that ansible-test downloads from a host CI cannot reach.

ansible-test runs it as `python get_pip_<version>.py [pip install args]` in a fresh venv without
pip. Same job: seed pip from the interpreter's own ensurepip, then let that pip install what
ansible-test asked for from the configured package index.
"""

import subprocess
import sys

# Options of get-pip.py itself, not of pip install.
GET_PIP_ONLY_OPTIONS = {"--no-setuptools", "--no-wheel"}


def main():
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
    pip_args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", *pip_args])


if __name__ == "__main__":
    main()
