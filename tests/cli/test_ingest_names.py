"""Frame names from flags and files are checked before use: `ingest licsbas|mintpy --frame ../x` and a cube file whose
`frame` attribute is `../x` are refused, and nothing is made outside the data root."""
from __future__ import annotations


import pytest

from ladsdin.cli import main
from tests.fixtures.real_layouts import write_licsbas, write_mintpy


@pytest.mark.parametrize("kind", ["licsbas", "mintpy"])
@pytest.mark.parametrize("bad", ["../x", "../../etc", "_hidden", "a/b", "x" * 65])
def test_a_frame_name_that_is_no_frame_name_is_refused(kind, bad, tmp_path, monkeypatch, capsys):
    src = tmp_path / "in" / ("cum.h5" if kind == "licsbas" else "timeseries.h5")
    (write_licsbas if kind == "licsbas" else write_mintpy)(src)
    root = tmp_path / "root" / "data"
    monkeypatch.setenv("LADSDIN_DATA_ROOT", str(root))
    monkeypatch.setenv("LADSDIN_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # never reached: the name is refused first
    rc = main(["ingest", kind, str(src), "--track", "A", "--frame", bad])
    assert rc != 0 and "not a frame name" in capsys.readouterr().err
    made = [p for p in tmp_path.rglob("*") if p.is_dir()]
    assert made == [tmp_path / "in"]  # refused before any directory was made, under the root or beside it


@pytest.mark.parametrize("bad", ["../x", "_hidden"])
def test_a_cube_files_frame_attribute_is_checked_before_use(bad, tmp_path):
    from ladsdin.formats import open_cube
    from ladsdin.models.cube import CubeError
    from tests.models.synthetic import small_cube

    cube = small_cube(n_t=12, ny=6, nx=6)
    cube.attrs.update(frame=bad, track="A")
    cube.to_netcdf(tmp_path / "cube.nc")
    with pytest.raises(CubeError, match="not a frame name"):
        open_cube(tmp_path / "cube.nc")
