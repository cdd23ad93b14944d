#ifndef UPLINKD_RULES_H
#define UPLINKD_RULES_H
#endif
