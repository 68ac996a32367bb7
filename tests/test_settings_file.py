"The project's own settings.ini: every profile loads, every key is documented in the file."
import configparser, os, re

from recsys_lib.settings import BACKEND_KEYS, SETTINGS_KEYS, load_settings

from conftest import ROOT


def test_every_profile_loads(monkeypatch):
    for k in [k for k in os.environ if k.startswith('RECSYS_')]: monkeypatch.delenv(k)
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(ROOT/'settings.ini')
    assert 'local' in cp.sections()
    for profile in cp.sections():
        s = load_settings(profile, ROOT/'settings.ini')
        assert s.runs_dir.is_relative_to(ROOT) and s.tracking_uri.startswith('sqlite:///' + str(ROOT))
        assert s.backend in ('local', 'sagemaker', 'sagemaker-local')


def test_every_key_is_documented():
    "Each key's line is preceded by a comment block that starts with its type."
    lines = (ROOT/'settings.ini').read_text().splitlines()
    for key, (kind, _) in {**SETTINGS_KEYS, **BACKEND_KEYS['sagemaker']}.items():
        i = next(i for i, l in enumerate(lines) if re.match(rf'{key}\s*=', l))
        first = i
        while first > 0 and lines[first - 1].startswith('#'): first -= 1
        assert first < i and lines[first].startswith(f'# {kind}:'), f"{key} lacks a '# {kind}: ...' comment above it"
