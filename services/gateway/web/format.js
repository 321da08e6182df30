// Numbers and times for people. 64-bit integers arrive as strings in
// protobuf's JSON mapping; they stay exact as BigInt (a JavaScript number
// would round anything past 2^53).

import {lang} from "./i18n.js";

export function big(value) {
  try {
    return BigInt(value || 0);
  } catch (e) {
    return 0n;
  }
}

export function num(value) {
  try {
    return BigInt(value || 0).toLocaleString(lang());
  } catch (e) {
    return String(value);
  }
}

export function when(timestamp) {
  return timestamp ? new Date(timestamp).toLocaleString(lang()) : "";
}
