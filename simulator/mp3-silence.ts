/**
 * Valid MPEG audio Layer III frames of silence. The simulator does not ship an MP3 encoder:
 * zeroed side information (part2_3_length = 0) decodes as digital silence in every decoder, and
 * the frame count gives the right duration, which is all clients and metering look at.
 */

interface Mp3Layout {
  /** Header byte 1: sync bits + version + layer III + no CRC. */
  readonly b1: number;
  readonly bitrateIndex: number;
  readonly rateIndex: number;
  readonly frameBytes: number;
  readonly samplesPerFrame: number;
}

// MPEG-1 for 32–48 kHz, MPEG-2 for 16–24 kHz, MPEG-2.5 for 8–12 kHz (ISO 11172-3 / 13818-3).
function layout(sampleRate: number): Mp3Layout {
  switch (sampleRate) {
    case 44100: // MPEG-1, 32 kbit/s: 144 * 32000 / 44100 = 104 bytes
      return { b1: 0xfb, bitrateIndex: 1, rateIndex: 0, frameBytes: 104, samplesPerFrame: 1152 };
    case 24000: // MPEG-2, 32 kbit/s: 72 * 32000 / 24000 = 96 bytes
      return { b1: 0xf3, bitrateIndex: 4, rateIndex: 1, frameBytes: 96, samplesPerFrame: 576 };
    case 16000: // MPEG-2, 32 kbit/s: 72 * 32000 / 16000 = 144 bytes
      return { b1: 0xf3, bitrateIndex: 4, rateIndex: 2, frameBytes: 144, samplesPerFrame: 576 };
    default: // 8000: MPEG-2.5, 8 kbit/s: 72 * 8000 / 8000 = 72 bytes
      return { b1: 0xe3, bitrateIndex: 1, rateIndex: 2, frameBytes: 72, samplesPerFrame: 576 };
  }
}

/** Silent MP3 frames covering `samples` samples of mono audio at `sampleRate`. */
export function silentMp3(samples: number, sampleRate: number): Buffer {
  const l = layout(sampleRate);
  const frames = Math.max(1, Math.ceil(samples / l.samplesPerFrame));
  const out = Buffer.alloc(frames * l.frameBytes);
  for (let f = 0; f < frames; f++) {
    const o = f * l.frameBytes;
    out[o] = 0xff;
    out[o + 1] = l.b1;
    out[o + 2] = (l.bitrateIndex << 4) | (l.rateIndex << 2);
    out[o + 3] = 0xc0; // single channel
  }
  return out;
}
