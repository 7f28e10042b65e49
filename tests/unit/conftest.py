import sys
from pathlib import Path

# scripted_http lives beside this file.
sys.path.insert(0, str(Path(__file__).parent))
