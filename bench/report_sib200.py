"""The `eval --report` of all SIB-200 dev rows (205 languages), and a screenshot of it: is a
205-language report readable?

    python bench/report_sib200.py [--dtype bfloat16]

Writes every dev row with its language code into one TSV (in a temporary folder), runs
`rosprompt eval --lang-col lang --report`, and saves bench/results/sib200_report.html and a
full-page PNG of it taken by headless chromium (bench/results/sib200_report.png).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIB = REPO.parent / "shared" / "data" / "sib200" / "dev"
RESULTS = REPO / "bench" / "results"


def combined_dev(folder: Path) -> Path:
    """Every SIB-200 dev row, with a `lang` column, in one TSV."""
    out = folder / "sib200_dev.tsv"
    with open(out, "w", encoding="utf-8") as fh:
        fh.write("lang\tcategory\ttext\n")
        for path in sorted(SIB.glob("*.tsv")):
            lines = path.read_text(encoding="utf-8").splitlines()
            header = lines[0].split("\t")
            for line in lines[1:]:
                if line.strip():
                    row = dict(zip(header, line.split("\t")))
                    fh.write(f"{path.stem}\t{row['category']}\t{row['text']}\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="auto", help="passed to eval (bfloat16 is faster on CPUs that have it)")
    args = parser.parse_args()
    if not SIB.is_dir():
        sys.exit(f"{SIB} not found: this bench needs ../shared/data/sib200")
    RESULTS.mkdir(exist_ok=True)
    html, png = RESULTS / "sib200_report.html", RESULTS / "sib200_report.png"
    with tempfile.TemporaryDirectory() as tmp:
        data = combined_dev(Path(tmp))
        subprocess.run([sys.executable, "-m", "rosprompt_cli", "eval", str(data), "--lang-col", "lang",
                        "--label-col", "category", "--dtype", args.dtype, "--report", str(html),
                        "--output", str(RESULTS / "sib200_report_metrics.json")], check=True,
                       stdout=subprocess.DEVNULL)
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if browser is None:
        sys.exit("no chromium to take the screenshot with (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", "--window-size=1100,6400", f"--screenshot={png}",
                        html.as_uri()], check=True, capture_output=True)
    from PIL import Image

    Image.open(png).convert("RGB").quantize(colors=64).save(png, optimize=True)  # a small file to commit
    print(f"{html}: {html.stat().st_size:,} bytes; screenshot {png} ({png.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
