"""Local audio finishing: join, mix, master, trim, info and subtitles.

Pure functions over files, streaming in blocks so memory stays flat with the file's length.
Nothing here is imported at server start: `engine`, `loudness`, `dsp` and `ops` import PyAV
and numpy at module level, so import them only where a tool runs. `subtitles`, `errors` and
`progress` are plain Python.

    ops.join / ops.mix / ops.master / ops.trim / ops.info   file in, file out (or a dict)
    subtitles.cues_from_transcript / to_srt / to_vtt          transcripts to subtitle text
    errors.PostError                                          every bad input, with a message
    progress.RenderProgress / running                         how far a render is; stop it
    credentials.read_provenance                               a file's C2PA Content Credentials
    production.assemble / audiobook_chapter                   a production's parts to its files
    heap.fixed_mmap_threshold / release_freed                 freed native buffers back to the OS
"""

__all__ = ["credentials", "engine", "errors", "heap", "loudness", "ops", "production", "progress", "subtitles"]
