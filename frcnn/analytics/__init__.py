"""What is measured on tracked objects in video: lines, zones and dwell, speed, a heatmap, one crop per track, the
events log and the summary. Per source and per model; the video pipeline feeds them, and so can your own code
(`class_names`: the model's, as `prediction.class_names`):

    from frcnn.analytics import LineSet, ZoneSet, name_lines, name_zones, parse_line, parse_zone

    lines = LineSet(name_lines([parse_line("door=0.5,0,0.5,1")]), width=1280, height=720)
    zones = ZoneSet(name_zones([parse_zone("queue=rect:0,0,0.3,1")]), 1280, 720, frame_interval=1 / 25)
    for frame, (time_s, tracked) in enumerate(your_tracked_frames):   # Detections with track_ids
        for event in lines.update(frame, time_s, tracked, class_names) + zones.update(frame, time_s, tracked,
                                                                                      class_names):
            print(event.kind, event.track_id, event.label, event.line or event.zone)
"""

from frcnn.analytics.events import Event
from frcnn.analytics.lines import LineSet, name_lines, parse_line
from frcnn.analytics.zones import ZoneSet, name_zones, parse_zone

__all__ = ["Event", "LineSet", "ZoneSet", "name_lines", "name_zones", "parse_line", "parse_zone"]
