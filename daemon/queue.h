#ifndef UPLINKD_QUEUE_H
#define UPLINKD_QUEUE_H
#endif
