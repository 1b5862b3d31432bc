"""Opening exports: sniffing the HealthData XML in a zip, refusing unsafe archives, clear errors."""

from __future__ import annotations

import zipfile

import pytest

from connectors.healthkit.export_file import ExportLimits, locate_export, open_export_stream
from tests.helpers import export_xml, record, write_zip
from wearfhir.errors import DataError, UnsafeInputError, UnsupportedInputError

XML = export_xml(record("HeartRate", "60", "count/min"))
CDA = b'<?xml version="1.0"?>\n<ClinicalDocument xmlns="urn:hl7-org:v3"/>\n'


def test_localised_member_name_is_found_by_sniffing(tmp_path) -> None:
    path = write_zip(tmp_path / "Export.zip", {
        "apple_health_export/export_cda.xml": CDA,
        "apple_health_export/Exportieren.xml": XML,
        "apple_health_export/workout-routes/route.gpx": b"<gpx/>",
    })
    location = locate_export(path)
    assert location.member == "apple_health_export/Exportieren.xml"
    assert location.size == len(XML)
    with open_export_stream(location) as stream:
        assert stream.read() == XML


def test_bare_xml_is_accepted(tmp_path) -> None:
    path = tmp_path / "export.xml"
    path.write_bytes(XML)
    location = locate_export(path)
    assert location.member is None and location.size == len(XML)


def test_zip_without_health_data_is_unsupported(tmp_path) -> None:
    path = write_zip(tmp_path / "export.zip", {"apple_health_export/export_cda.xml": CDA})
    with pytest.raises(UnsupportedInputError, match="no Apple Health XML"):
        locate_export(path)


@pytest.mark.parametrize("name", ["../../etc/evil.xml", "/abs/export.xml", "a/../../b.xml", "c:\\x.xml"])
def test_path_traversal_names_refuse_the_archive(tmp_path, name) -> None:
    path = write_zip(tmp_path / "export.zip", {"apple_health_export/export.xml": XML, name: b"x"})
    with pytest.raises(UnsafeInputError, match="unsafe path"):
        locate_export(path)


def test_compression_bomb_is_refused(tmp_path) -> None:
    bomb = XML[:-len(b"</HealthData>\n")] + b" " * 5_000_000 + b"</HealthData>\n"
    path = write_zip(tmp_path / "export.zip", {"export.xml": bomb})
    with pytest.raises(UnsafeInputError, match="compression bomb"):
        locate_export(path)
    assert locate_export(path, ExportLimits(max_ratio=1e9)).member == "export.xml"


def test_oversized_member_is_refused(tmp_path) -> None:
    path = write_zip(tmp_path / "export.zip", {"export.xml": XML})
    with pytest.raises(UnsafeInputError, match="limit"):
        locate_export(path, ExportLimits(max_uncompressed=100))


def test_not_an_export_says_what_to_pass(tmp_path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(UnsupportedInputError, match="Export All Health Data"):
        locate_export(path)
    with pytest.raises(DataError, match="no such file"):
        locate_export(tmp_path / "missing.zip")
    with pytest.raises(UnsupportedInputError, match="directory"):
        locate_export(tmp_path)


def test_damaged_zip_is_a_data_error(tmp_path) -> None:
    path = write_zip(tmp_path / "export.zip", {"export.xml": XML * 1})
    raw = bytearray(path.read_bytes())
    start = raw.index(b"PK\x03\x04") + 30 + len("export.xml")
    raw[start:start + 40] = b"\xff" * 40
    path.write_bytes(bytes(raw))
    assert zipfile.is_zipfile(path)
    with pytest.raises(DataError):
        location = locate_export(path)
        with open_export_stream(location) as stream:
            stream.read()
