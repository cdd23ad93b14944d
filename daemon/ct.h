#ifndef UPLINKD_CT_H
#define UPLINKD_CT_H
#endif
