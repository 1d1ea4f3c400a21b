// The third-party WHIP/WHEP clients the browser tests drive, as globals of one IIFE bundle
// (built by `make whip-clients`; nothing here is ours but these three lines).
import { WHIPClient } from "@eyevinn/whip-web-client";
import { WebRTCPlayer } from "@eyevinn/webrtc-player";
Object.assign(window, { WHIPClient, WebRTCPlayer });
