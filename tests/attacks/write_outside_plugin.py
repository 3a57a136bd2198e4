"""Attack: write, delete or steal files outside the scratch dir, directly and through links.

user_message: JSON {"targets": [paths to create or overwrite], "victim": an existing file
outside the sandbox to delete, "secret": an existing unreadable file to hard-link or rename
into scratch}. Each step is one BLOCKED or LEAKED line.
"""
import json
import os

from llm_utils import LLMClient


def _step(lines, what, action):
    try:
        result = action()
    except OSError as exc:
        lines.append(f"BLOCKED: {what}: {type(exc).__name__} {exc.errno} {exc.strerror}")
    else:
        lines.append(f"LEAKED: {what}: {result!r}")


def _write(path):
    with open(path, "w") as f:
        f.write("pwned by a plugin\n")
    return "written"


def _read(path):
    with open(path, "rb") as f:
        return f.read(200)


class WriteOutside(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        spec = json.loads(user_message)
        scratch = os.environ["HOME"]  # the scratch dir: the one place it may write
        lines = []
        for target in spec["targets"]:
            _step(lines, f"write {target}", lambda: _write(target))
        link = os.path.join(scratch, "symlink-out")
        # Creating the link is allowed (it lives in scratch); writing through it must not be.
        _step(lines, f"write through symlink {link}", lambda: (os.symlink(spec["targets"][0], link), _write(link)))
        hard = os.path.join(scratch, "hardlink-in")
        _step(lines, f"hard-link {spec['secret']} into scratch", lambda: (os.link(spec["secret"], hard), _read(hard)))
        stolen = os.path.join(scratch, "renamed-in")
        _step(lines, f"rename {spec['secret']} into scratch", lambda: (os.rename(spec["secret"], stolen), _read(stolen)))
        _step(lines, f"delete {spec['victim']}", lambda: os.unlink(spec["victim"]))
        _step(lines, f"truncate {spec['victim']}", lambda: os.truncate(spec["victim"], 0))
        return "\n".join(lines)

    def count_tokens(self, text):
        return len(text.split())
