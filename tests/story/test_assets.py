"""The asset catalog: files through Django's storages — the filesystem by default, S3 (moto)
in production — with bad uploads refused before anything is stored."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from moto import mock_aws

from apps.story import services
from apps.story.models import Asset
from tests.story.conftest import write

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def test_a_writer_uploads_an_image_linked_to_lore_and_downloads_it(
    alice: User, settings: Any, tmp_path: Any
) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "assets": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    write(alice, "brass-lung", kind="item", title="The Brass Lung")
    client = Client()
    client.force_login(alice)

    response = client.post(
        "/lore/assets/",
        {
            "kind": "image",
            "name": "Brass Lung sketch",
            "entries": "brass-lung",
            "file": SimpleUploadedFile("sketch.png", PNG, content_type="image/png"),
        },
    )

    assert response.status_code == 302
    asset = Asset.objects.get()
    assert asset.size == len(PNG) and asset.content_type == "image/png"
    assert asset.file.name.endswith(".png") and (tmp_path / asset.file.name).read_bytes() == PNG
    assert [e.slug for e in asset.entries.all()] == ["brass-lung"]
    download = client.get(f"/lore/assets/{asset.pk}/file")
    assert b"".join(download.streaming_content) == PNG  # type: ignore[attr-defined]
    assert "Brass Lung sketch" in client.get("/lore/brass-lung/").content.decode()


@pytest.mark.parametrize(
    ("kind", "upload", "field"),
    [
        ("image", SimpleUploadedFile("a.txt", b"hello", content_type="text/plain"), "file"),
        ("image", SimpleUploadedFile("a.png", b"", content_type="image/png"), "file"),
        ("sculpture", SimpleUploadedFile("a.png", PNG, content_type="image/png"), "kind"),
    ],
)
def test_bad_uploads_are_refused_and_store_nothing(
    alice: User, kind: str, upload: SimpleUploadedFile, field: str
) -> None:
    with pytest.raises(services.LoreValidationError) as error:
        services.asset_upload(kind=kind, name="x", upload=upload, uploaded_by=alice)
    assert field in error.value.fields and not Asset.objects.exists()


def test_an_oversized_upload_is_refused(alice: User, settings: Any) -> None:
    settings.BODYBROKER_ASSET_MAX_BYTES = 10
    upload = SimpleUploadedFile("a.png", PNG, content_type="image/png")
    with pytest.raises(services.LoreValidationError) as error:
        services.asset_upload(kind="image", name="big", upload=upload)
    assert error.value.fields["file"] == [f"is {len(PNG)} bytes; the limit is 10"]


def test_assets_go_to_s3_when_a_bucket_is_configured(alice: User, settings: Any) -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bb-assets")
        settings.STORAGES = {
            **settings.STORAGES,
            "assets": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {"bucket_name": "bb-assets", "region_name": "us-east-1"},
            },
        }
        upload = SimpleUploadedFile("theme.ogg", b"OggS" + b"\x01" * 32, content_type="audio/ogg")

        asset = services.asset_upload(kind="audio", name="Morgue theme", upload=upload)

        stored = s3.get_object(Bucket="bb-assets", Key=asset.file.name)["Body"].read()
        assert stored == b"OggS" + b"\x01" * 32
        assert asset.file.name.startswith("assets/") and asset.file.name.endswith(".ogg")
