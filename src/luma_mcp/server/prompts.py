"""Guidance the server offers as MCP prompts: what makes a good Luma request.

(No `from __future__ import annotations`: the SDK reads the prompts' argument descriptions.)
"""

from typing import Annotated, Any

from mcp.server import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS
from pydantic import Field

from luma_mcp.checks.plain_text import UnsafeText, check_plain_text

VIDEO_PROMPT_GUIDE = """\
Turn this rough idea into one Luma Dream Machine prompt, then call generate_video with it.

Idea: {idea}
{style_line}
How Luma reads a prompt (one clip is about 5 seconds, one continuous shot):
1. Subject first, concrete and visual: who or what, what they look like, where they are.
2. One clear motion: what moves and how (slowly turns, waves crash, steam rises). Motion
   is what makes a video rather than a still; say it explicitly.
3. Camera: one move, in film words: slow dolly in, orbit left, crane up, tracking shot,
   handheld, static wide shot, aerial drone shot, low angle.
4. Light and time: golden hour, overcast soft light, neon at night, volumetric fog, backlit.
5. Style: photoreal 35mm film, anamorphic, claymation, watercolor, 3D render, and a mood.

Rules that matter:
- 1 to 3 sentences, under about 60 words. No lists, no shot numbers, no dialogue or on-screen
  text (Luma renders text poorly).
- Say what you want, never what you don't: there is no negative prompt, and "no people"
  tends to add people.
- No cuts: several scenes belong in separate clips (use the storyboard prompt and extend_video).
- With a start image (start_image_url), describe the motion and camera, not what the image
  already shows. Image URLs must be public.
- Pick aspect_ratio for where it will be watched: 16:9 landscape, 9:16 phone/vertical,
  1:1 feed, 21:9 cinematic. Set loop=true only for seamless loops (backgrounds, GIF-like).
- Leave enhancement on for short prompts; turn it off when the prompt is already precise
  and you want it followed to the letter.

Write the prompt, show it to the user in one line, then call generate_video.
"""

STORYBOARD_GUIDE = """\
Plan a {shots}-shot video of this story, made as one generate then extends:

Story: {story}

1. Write {shots} shots, each about 5 seconds and one continuous action, in order. For each:
   subject, motion, camera move, light. Reuse the same words for the main subject and
   setting in every shot so the look stays consistent.
2. Shot 1: generate_video(prompt=<shot 1>, aspect_ratio=<one ratio for the whole piece>).
   Wait for it to succeed (get_task with wait_seconds if it is still running).
3. Each next shot: extend_video(video_id=<video_id of the previous result>,
   prompt=<next shot>). Extending continues from the last frame, so describe what happens
   next, not the scene from scratch. To land on a specific final frame, pass end_image_url.
4. Never submit a shot twice: each call is a paid generation. If a call returns pending,
   keep calling get_task with its task_id until it finishes.
5. When done, give the user every video URL in order (an extended video usually holds the
   shots before it too, so the last URL is often the whole piece).

Start by showing the user the {shots} shot descriptions, then make shot 1.
"""


def video_prompt(
    idea: Annotated[str, Field(description="The rough idea, in any words")],
    style: Annotated[str | None, Field(description="Optional look, e.g. '35mm film' or 'claymation'")] = None,
) -> str:
    """Turn a rough idea into a strong Luma prompt (subject, motion, camera, light, style)."""
    _check_text(idea=idea, style=style)
    style_line = f"Wanted style: {style}\n" if style else ""
    return VIDEO_PROMPT_GUIDE.format(idea=idea.strip(), style_line=style_line)


def storyboard(
    story: Annotated[str, Field(description="The story or sequence to film")],
    shots: Annotated[str, Field(description="How many shots, 2 to 6")] = "3",
) -> str:
    """Plan a multi-shot video made as one generate_video followed by extend_video calls."""
    _check_text(story=story)
    try:
        count = int(shots)
    except ValueError:
        count = 3
    return STORYBOARD_GUIDE.format(story=story.strip(), shots=min(max(count, 2), 6))


def _check_text(**texts: str | None) -> None:
    """The text becomes a generate_video prompt: the tools' rule (`plain_text`), as an error the
    client shows (the SDK hides the text of any other exception in a prompt)."""
    try:
        check_plain_text(**texts)
    except UnsafeText as exc:
        raise MCPError(INVALID_PARAMS, str(exc)) from None


def add_prompts(mcp: MCPServer[Any]) -> None:
    mcp.prompt(title="Write a video prompt")(video_prompt)
    mcp.prompt(title="Plan a multi-shot video")(storyboard)
