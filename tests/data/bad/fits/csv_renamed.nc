participant_id,municipality,arm,consultant_id,outflow_work
P1,Oss,control,c1,0
