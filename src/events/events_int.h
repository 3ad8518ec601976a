/*
 * events_int.h - what the files of src/events share and nobody else
 * uses (include/keel/events.h is the subsystem's interface).
 */
#ifndef KEEL_EVENTS_INT_H
#define KEEL_EVENTS_INT_H

#include <stdint.h>

/* The wall clock in microseconds since the epoch: the created_us of
 * events and outbox rows. */
int64_t keel__events_now_us(void);

#endif
