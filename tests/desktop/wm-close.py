#!/usr/bin/env python3
"""Closes X windows the way a window manager does when the user clicks a window's close button (ICCCM 4.2.8.1):
sends each a WM_PROTOCOLS client message carrying WM_DELETE_WINDOW, which the toolkit turns into its close request
(GTK's delete-event). Not XDestroyWindow (`xdotool windowclose`), which tears the window down behind the app's back,
nor XKillClient, which ends the app. Only libX11 through ctypes, no extra package. Usage: wm-close.py WINDOW_ID..."""
import ctypes
import sys

CLIENT_MESSAGE = 33  # X.h ClientMessage
NO_EVENT_MASK = 0
CURRENT_TIME = 0


class ClientMessageEvent(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("serial", ctypes.c_ulong),
        ("send_event", ctypes.c_int),
        ("display", ctypes.c_void_p),
        ("window", ctypes.c_ulong),
        ("message_type", ctypes.c_ulong),
        ("format", ctypes.c_int),
        ("data", ctypes.c_long * 5),
    ]


class Event(ctypes.Union):
    # XEvent is a union padded to 24 longs.
    _fields_ = [("xclient", ClientMessageEvent), ("pad", ctypes.c_long * 24)]


def main(window_ids):
    x11 = ctypes.CDLL("libX11.so.6")
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XInternAtom.restype = ctypes.c_ulong
    x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x11.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.POINTER(Event)]
    x11.XFlush.argtypes = [ctypes.c_void_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    display = x11.XOpenDisplay(None)
    if not display:
        sys.exit("wm-close: cannot open the display")
    protocols = x11.XInternAtom(display, b"WM_PROTOCOLS", 0)
    delete_window = x11.XInternAtom(display, b"WM_DELETE_WINDOW", 0)
    for window_id in window_ids:
        event = Event()
        event.xclient.type = CLIENT_MESSAGE
        event.xclient.window = window_id
        event.xclient.message_type = protocols
        event.xclient.format = 32
        event.xclient.data[0] = delete_window
        event.xclient.data[1] = CURRENT_TIME
        if not x11.XSendEvent(display, window_id, 0, NO_EVENT_MASK, ctypes.byref(event)):
            sys.exit(f"wm-close: cannot send to window {window_id}")
    x11.XFlush(display)
    x11.XCloseDisplay(display)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main([int(arg, 0) for arg in sys.argv[1:]])
